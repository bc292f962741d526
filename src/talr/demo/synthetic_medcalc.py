"""Synthetic clinical-calculator rows in the schema of MedCalc-Bench v1.0's ``test_data.csv``.

Lets ``talr demo`` train and score a clinical-calculation task on a machine with no benchmark data. Every row is a
templated patient note (age, sex, vitals, labs with units, history, distractor values), one of MedCalc-Bench's own
questions for that calculator, the ``Relevant Entities`` the note states, the exact answer, MedCalc-Bench's
tolerance window and a step-by-step explanation in MedCalc-Bench's style. All 14 columns are strings, as
``csv.DictReader`` returns them from the real file, so the MedCalc-Bench scorer reads these rows unchanged.

Conventions copied from the real v1.0 rows (checked against all 627 decimal rows of ``test_data.csv``):
- decimal answers are rounded to 3 decimals and written without a trailing ``.0`` (``'100'``, ``'25.238'``);
- ``Lower Limit`` / ``Upper Limit`` are ``answer * 0.95`` / ``answer * 1.05`` rounded to 5 decimals (swapped when the
  answer is negative); integer answers have both limits equal to the answer;
- explanations round every intermediate they display to 3 decimals and compute the next step from the displayed
  value, so the arithmetic in the text can be checked line by line.

Formulas and their sources are listed in docs/generators.md; each ``CALCULATORS`` entry also names its source.

Why one long module: most of it is the 19 calculator specifications (formula, units, plausible patient ranges,
explanation template), each read beside the shared note renderer; it serves only ``talr demo``, hence ``talr.demo``.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Callable, Sequence

COLUMNS = (
    "Row Number",
    "Calculator ID",
    "Calculator Name",
    "Category",
    "Output Type",
    "Note ID",
    "Note Type",
    "Patient Note",
    "Question",
    "Relevant Entities",
    "Ground Truth Answer",
    "Lower Limit",
    "Upper Limit",
    "Ground Truth Explanation",
)

# ---------------------------------------------------------------------------------------------------------------
# Numbers as MedCalc-Bench writes them


def round_answer(value: float) -> float:
    """MedCalc-Bench v1.0 rounding of decimal answers: 3 decimals, or 3 significant digits below 0.1 in magnitude
    (the real file has e.g. ``-0.0943`` and ``-0.0833`` next to ``0.032``)."""
    if value == 0:
        return 0.0
    if abs(value) >= 0.1:
        return round(value, 3)
    return round(value, 2 - math.floor(math.log10(abs(value))))


def round_half_up(value: float, digits: int = 0) -> float:
    """Round half away from zero (clinical "round to the nearest tenth"), not Python's round-half-even."""
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def format_number(value: float | int) -> str:
    """A number as MedCalc-Bench's CSV writes it: ``'100'`` for 100.0, ``'25.238'`` otherwise."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    text = repr(float(value))
    if "e" in text:
        text = f"{value:.12f}".rstrip("0")
    return text[:-2] if text.endswith(".0") else text


def answer_limits(answer: float | int, output_type: str) -> tuple[str, str]:
    """(Lower Limit, Upper Limit) strings: +-5 % of a decimal answer rounded to 5 decimals, exact for integers."""
    if output_type == "integer":
        return str(int(answer)), str(int(answer))
    if output_type != "decimal":
        raise ValueError(f"output type must be 'decimal' or 'integer', got {output_type!r}")
    low, high = sorted((answer * 0.95, answer * 1.05))
    return format_number(round(low, 5)), format_number(round(high, 5))


def _r(value: float) -> float:
    """An intermediate value as the explanation shows it (and uses it in the next step)."""
    return round_answer(value)


def _n(value: float | int) -> str:
    """A number inside an explanation: ints as ints, floats as Python shows them (``140.0``, ``0.838``)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    return str(value) if isinstance(value, int) else repr(float(value))


# ---------------------------------------------------------------------------------------------------------------
# Exact formulas (no rounding); each is tested against published or hand-computed examples.


def body_mass_index(weight_kg: float, height_m: float) -> float:
    """BMI = weight / height^2 (kg/m^2)."""
    return weight_kg / (height_m * height_m)


def mean_arterial_pressure(systolic: float, diastolic: float) -> float:
    """MAP = 2/3 * DBP + 1/3 * SBP (mm Hg)."""
    return 2.0 / 3.0 * diastolic + 1.0 / 3.0 * systolic


def anion_gap(sodium: float, chloride: float, bicarbonate: float) -> float:
    """AG = Na - (Cl + HCO3) (mEq/L)."""
    return sodium - (chloride + bicarbonate)


def delta_gap(anion_gap_value: float) -> float:
    """Delta gap = AG - 12 (mEq/L; 12 is the normal anion gap)."""
    return anion_gap_value - 12.0


def albumin_corrected_anion_gap(anion_gap_value: float, albumin_g_dl: float) -> float:
    """AG + 2.5 * (4 - albumin) (Figge et al. 1998)."""
    return anion_gap_value + 2.5 * (4.0 - albumin_g_dl)


def corrected_calcium(calcium_mg_dl: float, albumin_g_dl: float, normal_albumin_g_dl: float = 4.0) -> float:
    """Ca + 0.8 * (normal albumin - albumin) (mg/dL; Payne et al. 1973)."""
    return 0.8 * (normal_albumin_g_dl - albumin_g_dl) + calcium_mg_dl


def ideal_body_weight(sex: str, height_in: float) -> float:
    """Devine (1974): 50 kg (men) or 45.5 kg (women) + 2.3 kg per inch over 5 feet."""
    return (50.0 if _is_male(sex) else 45.5) + 2.3 * (height_in - 60.0)


def adjusted_body_weight(weight_kg: float, ideal_weight_kg: float) -> float:
    """ABW = IBW + 0.4 * (weight - IBW)."""
    return ideal_weight_kg + 0.4 * (weight_kg - ideal_weight_kg)


def cockcroft_gault(age: float, weight_kg: float, creatinine_mg_dl: float, sex: str) -> float:
    """CrCl = (140 - age) * weight * (0.85 if female) / (72 * serum creatinine) (mL/min; Cockcroft & Gault 1976)."""
    return (140.0 - age) * weight_kg * (1.0 if _is_male(sex) else 0.85) / (72.0 * creatinine_mg_dl)


def weight_status(bmi: float) -> str:
    """WHO adult BMI classes as the Cockcroft-Gault question uses them."""
    if bmi < 18.5:
        return "underweight"
    if bmi < 25.0:
        return "normal weight"
    return "overweight/obese"


def cockcroft_gault_weight(weight_kg: float, ideal_weight_kg: float, bmi: float) -> float:
    """The weight MedCalc-Bench's Cockcroft-Gault question asks for: actual weight if underweight, min(IBW, actual)
    if normal weight, adjusted body weight if overweight or obese."""
    status = weight_status(bmi)
    if status == "underweight":
        return weight_kg
    if status == "normal weight":
        return min(ideal_weight_kg, weight_kg)
    return adjusted_body_weight(weight_kg, ideal_weight_kg)


def qtc_bazett(qt_msec: float, heart_rate: float) -> float:
    """QTc = QT / sqrt(RR), RR = 60 / heart rate in seconds (Bazett 1920)."""
    return qt_msec / math.sqrt(60.0 / heart_rate)


def qtc_fridericia(qt_msec: float, heart_rate: float) -> float:
    """QTc = QT / RR^(1/3), RR = 60 / heart rate in seconds (Fridericia 1920)."""
    return qt_msec / (60.0 / heart_rate) ** (1.0 / 3.0)


def body_surface_area(weight_kg: float, height_cm: float) -> float:
    """Mosteller (1987): sqrt(height (cm) * weight (kg) / 3600) in m^2."""
    return math.sqrt(weight_kg * height_cm / 3600.0)


def serum_osmolality(sodium_mmol_l: float, bun_mg_dl: float, glucose_mg_dl: float) -> float:
    """2 * Na + BUN / 2.8 + glucose / 18 (mOsm/kg)."""
    return 2.0 * sodium_mmol_l + bun_mg_dl / 2.8 + glucose_mg_dl / 18.0


def sodium_correction_hyperglycemia(sodium: float, glucose_mg_dl: float) -> float:
    """Na + 0.024 * (glucose - 100) (mEq/L; Hillier et al. 1999)."""
    return sodium + 0.024 * (glucose_mg_dl - 100.0)


def total_body_water_fraction(age_years: float, sex: str) -> float:
    """Fraction of body weight that is water: 0.6 children and adult men, 0.5 adult women, 0.5 elderly men,
    0.45 elderly women (adult 18-64, elderly >= 65)."""
    if age_years < 18:
        return 0.6
    if age_years < 65:
        return 0.6 if _is_male(sex) else 0.5
    return 0.5 if _is_male(sex) else 0.45


def free_water_deficit(total_body_water_fraction_value: float, weight_kg: float, sodium: float) -> float:
    """TBW fraction * weight * (Na / 140 - 1) (litres)."""
    return total_body_water_fraction_value * weight_kg * (sodium / 140.0 - 1.0)


def ldl_friedewald(total_cholesterol: float, hdl: float, triglycerides: float) -> float:
    """LDL = TC - HDL - TG / 5 (all mg/dL; Friedewald et al. 1972)."""
    return total_cholesterol - hdl - triglycerides / 5.0


def cha2ds2_vasc(age: float, sex: str, chf: bool, hypertension: bool, stroke_tia_thromboembolism: bool,
                 vascular_disease: bool, diabetes: bool) -> int:
    """CHA2DS2-VASc (Lip et al. 2010): CHF 1, hypertension 1, age >= 75 2, diabetes 1, stroke/TIA/thromboembolism 2,
    vascular disease 1, age 65-74 1, female sex 1."""
    score = 2 if age >= 75 else 1 if age >= 65 else 0
    score += 0 if _is_male(sex) else 1
    score += int(chf) + int(hypertension) + 2 * int(stroke_tia_thromboembolism) + int(vascular_disease)
    return score + int(diabetes)


def has_bled(age: float, uncontrolled_hypertension: bool, renal_disease: bool, liver_disease: bool, stroke: bool,
             prior_bleeding: bool, labile_inr: bool, bleeding_medication: bool, alcohol_drinks_per_week: int) -> int:
    """HAS-BLED (Pisters et al. 2010): one point each for hypertension, abnormal renal function, abnormal liver
    function, stroke, bleeding, labile INR, age > 65, predisposing drugs, and alcohol (>= 8 drinks/week)."""
    flags = (uncontrolled_hypertension, renal_disease, liver_disease, stroke, prior_bleeding, labile_inr,
             age > 65, bleeding_medication, alcohol_drinks_per_week >= 8)
    return sum(int(flag) for flag in flags)


def meld_na(creatinine_mg_dl: float, bilirubin_mg_dl: float, inr: float, sodium: float, dialysis: bool) -> int:
    """MELD-Na as OPTN/UNOS policy 9.1 (2016) computes it: creatinine, bilirubin and INR floored at 1.0, creatinine
    capped at 4.0 (and set to 4.0 after dialysis twice in a week or 24 h of CVVHD), sodium bounded to 125-137;
    MELD(i) = 10 * round(0.957 ln Cr + 0.378 ln bili + 1.120 ln INR + 0.643, 1 decimal); if MELD(i) > 11,
    MELD = MELD(i) + 1.32 (137 - Na) - 0.033 MELD(i) (137 - Na); rounded, capped at 40."""
    creatinine = 4.0 if dialysis else min(max(creatinine_mg_dl, 1.0), 4.0)
    bilirubin = max(bilirubin_mg_dl, 1.0)
    inr = max(inr, 1.0)
    sodium = min(max(sodium, 125.0), 137.0)
    raw = 0.957 * math.log(creatinine) + 0.378 * math.log(bilirubin) + 1.120 * math.log(inr) + 0.643
    meld_i = 10.0 * round_half_up(raw, 1)
    meld = meld_i + 1.32 * (137.0 - sodium) - 0.033 * meld_i * (137.0 - sodium) if meld_i > 11 else meld_i
    return int(min(round_half_up(meld), 40.0))


def _is_male(sex: str) -> bool:
    if sex not in ("Male", "Female"):
        raise ValueError(f"sex must be 'Male' or 'Female', got {sex!r}")
    return sex == "Male"


# ---------------------------------------------------------------------------------------------------------------
# Unit conversions with explanation text. Entities are MedCalc-Bench ``Relevant Entities`` values: [value, unit],
# or [feet, 'ft', inches, 'in'] for heights.

_MOLAR_MASS_G_PER_MOL = {  # conversions between mmol/L (or umol/L) and mg/dL
    "creatinine": 113.12,
    "calcium": 40.08,
    "glucose": 180.16,
    "total cholesterol": 386.65,  # cholesterol: 1 mmol/L = 38.67 mg/dL
    "HDL cholesterol": 386.65,
    "triglycerides": 885.7,  # triolein: 1 mmol/L = 88.57 mg/dL
}
_MONOVALENT_IONS = ("sodium", "chloride", "bicarbonate")


def _concentration(entity: Sequence, compound: str, target: str) -> tuple[float, str]:
    """(value in ``target`` units, explanation sentence(s))."""
    value, unit = float(entity[0]), entity[1]
    stated = f"The concentration of {compound} is {_n(value)} {unit}. "
    if unit == target:
        return value, stated
    text = stated + f"We need to convert the concentration to {target}. "
    if {unit, target} == {"mmol/L", "mEq/L"} and compound in _MONOVALENT_IONS:
        return value, text + (f"The compound, {compound}, has a valence of 1, so {_n(value)} {unit} corresponds to "
                              f"{_n(value)} {target}. ")
    if target == "mg/dL" and unit in ("mmol/L", "µmol/L") and compound in _MOLAR_MASS_G_PER_MOL:
        molar_mass = _MOLAR_MASS_G_PER_MOL[compound]
        if unit == "mmol/L":
            mg_per_l = _r(value * molar_mass)
            converted = _r(mg_per_l / 10.0)
            return converted, text + (
                f"The molar mass of {compound} is {molar_mass} g/mol, so {_n(value)} mmol/L * {molar_mass} mg/mmol = "
                f"{_n(mg_per_l)} mg/L. Since 1 L = 10 dL, this is {_n(mg_per_l)} mg/L / 10 dL/L = "
                f"{_n(converted)} mg/dL. ")
        mg_per_l = _r(value * molar_mass / 1000.0)
        converted = _r(mg_per_l / 10.0)
        return converted, text + (
            f"The molar mass of {compound} is {molar_mass} g/mol, so {_n(value)} µmol/L * {molar_mass} µg/µmol / "
            f"1000 µg/mg = {_n(mg_per_l)} mg/L. Since 1 L = 10 dL, this is {_n(mg_per_l)} mg/L / 10 dL/L = "
            f"{_n(converted)} mg/dL. ")
    if unit == "g/L" and target == "g/dL":
        converted = _r(value / 10.0)
        return converted, text + f"Since 1 L = 10 dL, {_n(value)} g/L / 10 dL/L = {_n(converted)} g/dL. "
    if unit == "mg/dL" and target == "g/dL":
        converted = _r(value / 1000.0)
        return converted, text + f"Since 1 g = 1000 mg, {_n(value)} mg/dL / 1000 mg/g = {_n(converted)} g/dL. "
    raise ValueError(f"cannot convert {compound} from {unit!r} to {target!r}")


def _height(entity: Sequence, target: str) -> tuple[float, str]:
    """Height in ``target`` ('m', 'cm' or 'in') with the conversion sentence."""
    if len(entity) == 4:
        feet, inches = entity[0], entity[2]
        total_in = feet * 12 + inches
        head = (f"The patient's height is {_n(feet)} ft {_n(inches)} in, which converts to {_n(feet)} ft * 12 in/ft + "
                f"{_n(inches)} in = {_n(total_in)} in. ")
        if target == "in":
            return float(total_in), head
        factor, label = {"m": (0.0254, "m"), "cm": (2.54, "cm")}[target]
        converted = _r(total_in * factor)
        return converted, head + (f"Hence, the patient's height is {_n(total_in)} in * {factor} {label}/in = "
                                  f"{_n(converted)} {label}. ")
    value, unit = entity[0], entity[1]
    if unit == target:
        return float(value), f"The patient's height is {_n(value)} {unit}. "
    factors = {("cm", "m"): (0.01, "1 m / 100 cm"), ("in", "m"): (0.0254, "0.0254 m/in"),
               ("m", "cm"): (100.0, "100 cm/m"), ("in", "cm"): (2.54, "2.54 cm/in"),
               ("cm", "in"): (0.393701, "0.393701 in/cm"), ("m", "in"): (39.3701, "39.3701 in/m")}
    if (unit, target) not in factors:
        raise ValueError(f"cannot convert a height from {unit!r} to {target!r}")
    factor, factor_text = factors[(unit, target)]
    converted = _r(value * factor)
    return converted, (f"The patient's height is {_n(value)} {unit}, which is {_n(value)} {unit} * {factor_text} = "
                       f"{_n(converted)} {target}. ")


def _weight_kg(entity: Sequence) -> tuple[float, str]:
    value, unit = entity[0], entity[1]
    if unit == "kg":
        return float(value), f"The patient's weight is {_n(value)} kg. "
    if unit == "lbs":
        converted = _r(value * 0.453592)
        return converted, (f"The patient's weight is {_n(value)} lbs so this converts to {_n(value)} lbs * 0.453592 "
                           f"kg/lbs = {_n(converted)} kg. ")
    if unit == "g":
        converted = _r(value / 1000.0)
        return converted, (f"The patient's weight is {_n(value)} g so this converts to {_n(value)} g / 1000 g/kg = "
                           f"{_n(converted)} kg. ")
    raise ValueError(f"cannot convert a weight from {unit!r} to kg")


def _age_years(entity: Sequence) -> tuple[float | int, str]:
    value, unit = entity[0], entity[1]
    if unit != "years":
        raise ValueError(f"ages must be in years, got {unit!r}")
    return value, f"The patient is {_n(value)} years old. "


def _flag(entities: dict, key: str) -> bool | None:
    """A history item: True/False when the note states it, None when the note does not mention it."""
    value = entities.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"entity {key!r} must be True or False, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# Explanations in MedCalc-Bench's style. Each takes a Relevant Entities dict and returns (answer, explanation).


def _explain_bmi(entities: dict) -> tuple[float, str]:
    height_m, height_text = _height(entities["height"], "m")
    weight, weight_text = _weight_kg(entities["weight"])
    bmi = _r(body_mass_index(weight, height_m))
    text = ("The formula for computing the patient's BMI is (weight)/(height * height), where weight is the patient's "
            "weight in kg and height is the patient's height in m.\n"
            f"{height_text}{weight_text}The patient's bmi is therefore {_n(weight)} kg / ({_n(height_m)} m * "
            f"{_n(height_m)} m) = {_n(bmi)} kg/m^2.")
    return bmi, text


def _explain_map(entities: dict) -> tuple[float, str]:
    systolic = float(entities["Systolic Blood Pressure"][0])
    diastolic = float(entities["Diastolic Blood Pressure"][0])
    value = _r(mean_arterial_pressure(systolic, diastolic))
    text = ("The mean arterial pressure is computed by the formula 2/3 * (diastolic blood pressure) + 1/3 * (systolic "
            f"blood pressure). Plugging in the values, we get 2/3 * {_n(diastolic)} mm Hg + 1/3 * {_n(systolic)} mm Hg = "
            f"{_n(value)} mm Hg.\nHence, the patient's mean arterial pressure is {_n(value)} mm Hg.")
    return value, text


def _anion_gap_steps(entities: dict) -> tuple[float, str]:
    sodium, sodium_text = _concentration(entities["Sodium"], "sodium", "mEq/L")
    chloride, chloride_text = _concentration(entities["Chloride"], "chloride", "mEq/L")
    bicarbonate, bicarbonate_text = _concentration(entities["Bicarbonate"], "bicarbonate", "mEq/L")
    gap = _r(anion_gap(sodium, chloride, bicarbonate))
    text = ("The formula for computing a patient's anion gap is: sodium (mEq/L) - (chloride (mEq/L) + bicarbonate "
            f"(mEq/L)).\n{sodium_text}\n{chloride_text}\n{bicarbonate_text}\n"
            f"Plugging in these values into the anion gap formula gives us {_n(sodium)} mEq/L - ({_n(chloride)} mEq/L + "
            f"{_n(bicarbonate)} mEq/L) = {_n(gap)} mEq/L. Hence, the patient's anion gap is {_n(gap)} mEq/L.")
    return gap, text


def _explain_anion_gap(entities: dict) -> tuple[float, str]:
    return _anion_gap_steps(entities)


def _explain_delta_gap(entities: dict) -> tuple[float, str]:
    gap, gap_text = _anion_gap_steps(entities)
    value = _r(delta_gap(gap))
    text = ("To compute the delta gap, the formula is anion gap (in mEq/L) - 12. The first step is to compute the "
            f"patient's anion gap.\n{gap_text}\nPlugging in {_n(gap)} mEq/L for the delta gap formula, we get "
            f"{_n(gap)} - 12 = {_n(value)} mEq/L. Hence, the patient's delta gap is {_n(value)} mEq/L.")
    return value, text


def _explain_albumin_corrected_anion_gap(entities: dict) -> tuple[float, str]:
    gap, gap_text = _anion_gap_steps(entities)
    albumin, albumin_text = _concentration(entities["Albumin"], "albumin", "g/dL")
    value = _r(albumin_corrected_anion_gap(gap, albumin))
    text = ("The formula for computing a patient's albumin corrected anion gap is: anion_gap (in mEq/L) + 2.5 * (4 - "
            f"albumin (in g/dL)).\n{gap_text}\n{albumin_text}\nPlugging in these values into the albumin corrected "
            f"anion gap formula, we get {_n(gap)} (mEq/L) + 2.5 * (4 - {_n(albumin)} (in g/dL)) = {_n(value)} mEq/L. "
            f"Hence, the patient's albumin corrected anion gap is {_n(value)} mEq/L.")
    return value, text


def _explain_calcium_correction(entities: dict) -> tuple[float, str]:
    albumin, albumin_text = _concentration(entities["Albumin"], "albumin", "g/dL")
    calcium, calcium_text = _concentration(entities["Calcium"], "calcium", "mg/dL")
    value = _r(corrected_calcium(calcium, albumin))
    text = ("To compute the patient's corrected calcium level in mg/dL, the formula is (0.8 * (Normal Albumin (in g/dL) "
            "- Patient's Albumin (in g/dL))) + Serum Calcium (in mg/dL).\nThe patient's normal albumin level is "
            f"4.0 g/dL.\n{albumin_text}\n{calcium_text}\nPlugging these values into the formula, we get (0.8 * (4.0 g/dL "
            f"- {_n(albumin)} g/dL)) + {_n(calcium)} mg/dL = {_n(value)} mg/dL.\nThe patient's corrected calcium "
            f"concentration is {_n(value)} mg/dL.")
    return value, text


def _ideal_body_weight_steps(entities: dict) -> tuple[float, str]:
    sex = entities["sex"]
    height_in, height_text = _height(entities["height"], "in")
    base = "50 kg" if _is_male(sex) else "45.5 kg"
    ibw = _r(ideal_body_weight(sex, height_in))
    text = (f"The patient's gender is {sex}.\n{height_text}\nFor {'males' if _is_male(sex) else 'females'}, the ideal "
            f"body weight (IBW) is calculated as follows:\nIBW = {base} + 2.3 kg * (height (in inches) - 60)\n"
            f"Plugging in the values gives us {base} + 2.3 kg * ({_n(height_in)} (in inches) - 60) = {_n(ibw)} kg.\n"
            f"Hence, the patient's IBW is {_n(ibw)} kg.")
    return ibw, text


def _explain_ideal_body_weight(entities: dict) -> tuple[float, str]:
    return _ideal_body_weight_steps(entities)


def _adjusted_body_weight_steps(entities: dict, ibw: float) -> tuple[float, str]:
    weight, weight_text = _weight_kg(entities["weight"])
    abw = _r(adjusted_body_weight(weight, ibw))
    text = (f"{weight_text}To compute the ABW value, apply the following formula: ABW = IBW + 0.4 * (weight (in kg) - "
            f"IBW (in kg)). ABW = {_n(ibw)} kg + 0.4 * ({_n(weight)} kg - {_n(ibw)} kg) = {_n(abw)} kg. The patient's "
            f"adjusted body weight is {_n(abw)} kg.")
    return abw, text


def _explain_adjusted_body_weight(entities: dict) -> tuple[float, str]:
    ibw, ibw_text = _ideal_body_weight_steps(entities)
    abw, abw_text = _adjusted_body_weight_steps(entities, ibw)
    return abw, f"{ibw_text}\n{abw_text}"


def _explain_creatinine_clearance(entities: dict) -> tuple[float, str]:
    sex = entities["sex"]
    coefficient = 1 if _is_male(sex) else 0.85
    age, age_text = _age_years(entities["age"])
    creatinine, creatinine_text = _concentration(entities["creatinine"], "creatinine", "mg/dL")
    bmi, bmi_text = _explain_bmi(entities)
    weight, _ = _weight_kg(entities["weight"])
    status = weight_status(bmi)
    ibw, ibw_text = _ideal_body_weight_steps(entities)
    lines = [
        "The formula for computing Cockcroft-Gault is given by CrCl = ((140 - age) * adjusted weight * "
        "(gender_coefficient)) / (serum creatinine * 72), where the gender_coefficient is 1 if male, and 0.85 if "
        "female. The serum creatinine concentration is in mg/dL.",
        f"The patient's gender is {sex.lower()}, which means that the gender coefficient is {coefficient}.",
        age_text.strip(),
        creatinine_text.strip(),
        f"{bmi_text} The patient's BMI is {_n(bmi)}, indicating they are {status}.",
    ]
    used = _r(cockcroft_gault_weight(weight, ibw, bmi))
    if status == "underweight":
        lines.append(f"Because the patient is underweight, we take the patient's weight, {_n(weight)} kg as the "
                     "patient's adjusted weight needed for the Cockroft-Gault Equation.")
    elif status == "normal weight":
        lines.append("Because the patient is normal weight, we take the minimum of the ideal body weight and the "
                     "patient's actual weight as the patient's adjusted weight for the Cockroft-Gault Equation. Shown "
                     f"below is the computation for IBW (ideal body weight).\n{ibw_text}\nHence, the adjusted body "
                     f"weight is the minimum of {_n(ibw)} kg and {_n(weight)} kg, giving us an adjusted body weight of "
                     f"{_n(used)} kg.")
    else:
        _, abw_text = _adjusted_body_weight_steps(entities, ibw)
        lines.append("Because the patient is overweight/obese, we use the adjusted body weight formula to get the "
                     "adjusted weight used for Cockroft-Gault Equation. Shown below is the computation for IBW (ideal "
                     f"body weight).\n{ibw_text}\nShown below is the computation for ABW (adjusted body weight).\n"
                     f"{abw_text}")
    value = _r(cockcroft_gault(age, used, creatinine, sex))
    lines.append("Using the Cockcroft-Gault equation:\nCrCl = ((140 - age) * adjusted weight * gender_coefficient) / "
                 f"(serum creatinine * 72).\nPlugging the patient's values gives us ((140 - {_n(age)}) * {_n(used)} * "
                 f"{coefficient}) / ({_n(creatinine)} * 72) = {_n(value)} mL/min. Hence, the patient's creatinine "
                 f"clearance is {_n(value)} mL/min.")
    return value, "\n".join(lines)


def _qtc_steps(entities: dict, name: str, formula: str, root_text: Callable[[float], str],
               root: Callable[[float], float]) -> tuple[float, str]:
    heart_rate = entities["Heart Rate or Pulse"][0]
    qt = entities["QT interval"][0]
    rr = _r(60.0 / heart_rate)
    value = _r(qt / root(rr))
    text = (f"The corrected QT interval using the {name} formula is computed as QTc = QT interval / {formula}, where "
            "the QT interval is in msec, and RR interval is given as 60/(heart rate).\n"
            f"The patient's heart rate is {_n(heart_rate)} beats per minute.\nThe QT interval is {_n(qt)} msec.\n"
            f"The RR interval is computed as 60/(heart rate), and so the RR interval is 60/{_n(heart_rate)} = {_n(rr)}.\n"
            f"Hence, plugging in these values, we will get {_n(qt)}/{root_text(rr)} = {_n(value)}.\n"
            f"The patient's corrected QT interval (QTc) is {_n(value)} msec.")
    return value, text


def _explain_qtc_bazett(entities: dict) -> tuple[float, str]:
    return _qtc_steps(entities, "Bazett", "√(RR interval)", lambda rr: f"√({_n(rr)})", math.sqrt)


def _explain_qtc_fridericia(entities: dict) -> tuple[float, str]:
    return _qtc_steps(entities, "Fridericia", "(RR interval)^(1/3)", lambda rr: f"({_n(rr)})^(1/3)",
                      lambda rr: rr ** (1.0 / 3.0))


def _explain_body_surface_area(entities: dict) -> tuple[float, str]:
    height_cm, height_text = _height(entities["height"], "cm")
    weight, weight_text = _weight_kg(entities["weight"])
    value = _r(body_surface_area(weight, height_cm))
    text = ("For the body surface area computation, the formula is sqrt((weight (in kgs) * height (in cm))/3600), "
            f"where the units of weight is in kg and the units of height is in cm.\n{height_text}\n{weight_text}\n"
            f"Therefore, the patient's bsa is sqrt(({_n(weight)} (in kgs) * {_n(height_cm)} (in cm))/3600) = "
            f"{_n(value)} m^2.")
    return value, text


def _explain_serum_osmolality(entities: dict) -> tuple[float, str]:
    sodium, sodium_text = _concentration(entities["Sodium"], "sodium", "mmol/L")
    bun, bun_text = _concentration(entities["Blood Urea Nitrogen (BUN)"], "BUN", "mg/dL")
    glucose, glucose_text = _concentration(entities["Glucose"], "glucose", "mg/dL")
    value = _r(serum_osmolality(sodium, bun, glucose))
    text = ("The formula for computing serum osmolality is 2 * Na + (BUN / 2.8) + (glucose / 18), where Na is the "
            "concentration of sodium in mmol/L, the concentration of BUN is in mg/dL, and the concentration of glucose "
            f"is in mg/dL.\n{sodium_text}\n{bun_text}\n{glucose_text}\nPlugging these values into the equation, we get "
            f"2 * {_n(sodium)} + ({_n(bun)} / 2.8) + ({_n(glucose)} / 18) = {_n(value)} mmol/L. The patient's "
            f"calculated serum osmolality concentration is {_n(value)} mmol/L. This is equivalent to {_n(value)} mOsm/kg.")
    return value, text


def _explain_sodium_correction(entities: dict) -> tuple[float, str]:
    sodium, sodium_text = _concentration(entities["Sodium"], "sodium", "mEq/L")
    glucose, glucose_text = _concentration(entities["Glucose"], "glucose", "mg/dL")
    value = _r(sodium_correction_hyperglycemia(sodium, glucose))
    text = ("The formula for Sodium Correction for Hyperglycemia is Measured sodium + 0.024 * (Serum glucose - 100), "
            "where Measured Sodium is the sodium concentration in mEq/L and the Serum glucose is the concentration of "
            f"glucose in mg/dL.\n{sodium_text}\n{glucose_text}\nPlugging in these values into the formula gives us "
            f"{_n(sodium)} mEq/L + 0.024 * ({_n(glucose)} - 100) = {_n(value)} mEq/L.\nHence, the patient's corrected "
            f"concentration of sodium is {_n(value)} mEq/L.")
    return value, text


def _explain_free_water_deficit(entities: dict) -> tuple[float, str]:
    sex = entities["sex"]
    age, age_text = _age_years(entities["age"])
    fraction = total_body_water_fraction(age, sex)
    if age < 18:
        group_text = ("The patient is less than 18 years old and so the patient is a child. This means total body "
                      f"water percentage value is {fraction}.")
    elif age < 65:
        group_text = (f"The patient's age is between 18 and 64 and so the patient is an adult. For adult "
                      f"{sex.lower()}s the total body water percentage value is {fraction}.")
    else:
        group_text = (f"The patient's age is 65 or older and so the patient is considered elderly. For elderly "
                      f"{sex.lower()}s, the total body water percentage value is {fraction}.")
    weight, weight_text = _weight_kg(entities["weight"])
    sodium, sodium_text = _concentration(entities["Sodium"], "sodium", "mmol/L")
    value = _r(free_water_deficit(fraction, weight, sodium))
    text = ("The formula for computing the free water deficit is (total body water percentage) * (weight) * "
            "(sodium/140 - 1), where the total body water percentage is a percentage expressed as a decimal, weight is "
            "in kg, and the sodium concentration is in mmol/L.\nThe patient's total body water percentage is based on "
            f"the patient's age and gender.\n{age_text}The patient is {sex.lower()}.\n{group_text}\n{weight_text}"
            f"{sodium_text}Plugging in these values into the equation, we get {fraction} * {_n(weight)} * "
            f"({_n(sodium)}/140 - 1) = {_n(value)} L. The patient's free water deficit is {_n(value)} L.")
    return value, text


def _explain_ldl(entities: dict) -> tuple[float, str]:
    total, total_text = _concentration(entities["Total cholesterol"], "total cholesterol", "mg/dL")
    hdl, hdl_text = _concentration(entities["high-density lipoprotein cholesterol"], "HDL cholesterol", "mg/dL")
    triglycerides, tg_text = _concentration(entities["Triglycerides"], "triglycerides", "mg/dL")
    value = _r(ldl_friedewald(total, hdl, triglycerides))
    text = ("To compute the patient's LDL cholesterol, apply the following formula: LDL cholesterol = total cholesterol "
            "- HDL - (triglycerides / 5), where the units for total cholesterol, HDL cholesterol, and triglycerides are "
            f"all mg/dL.\n{total_text}\n{hdl_text}\n{tg_text}\nPlugging in these values will give us {_n(total)} mg/dL - "
            f"{_n(hdl)} mg/dL - ({_n(triglycerides)}/5) mg/dL = {_n(value)} mg/dL.\nThe patient's concentration of LDL "
            f"cholesterol is {_n(value)} mg/dL.")
    return value, text


def _history_sentence(item: str, stated: bool | None) -> str:
    if stated is None:
        return f"Because {item} history is not specified in the patient note, we assume that it is absent from the patient."
    return f"Based on the patient note, the patient history for {item} is {'present' if stated else 'absent'}."


def _explain_cha2ds2_vasc(entities: dict) -> tuple[int, str]:
    age, age_text = _age_years(entities["age"])
    sex = entities["sex"]
    lines = ["The current CHA2DS2-VASc score is 0."]
    score = 0

    def add(points: int, because: str) -> str:
        nonlocal score
        if points:
            score += points
            return (f"{because}, {'one point is' if points == 1 else 'two points are'} added to the score, making the "
                    f"current total {score - points} + {points} = {score}.")
        return f"{because}, no points are added to the current total, keeping the total at {score}."

    if age >= 75:
        lines.append(age_text + add(2, "Because the age is 75 or older"))
    elif age >= 65:
        lines.append(age_text + add(1, "Because the age is between 65 and 74"))
    else:
        lines.append(age_text + add(0, "Because the age is less than 65 years"))
    if _is_male(sex):
        lines.append(f"The patient's gender is male and so no points are added to the current total, keeping the "
                     f"total at {score}.")
    else:
        score += 1
        lines.append(f"The patient's gender is female and so one point is added to the score, making the current "
                     f"total {score - 1} + 1 = {score}.")
    for key, item in (("Congestive Heart Faliure", "congestive heart failure"), ("Hypertension history", "hypertension")):
        stated = _flag(entities, key)
        present = bool(stated)
        lines.append(_history_sentence(item, stated) + " "
                     + add(int(present), f"Because the patient {'has' if present else 'does not have'} {item}"))
    stroke_items = (("Stroke", "stroke"), ("Transient Ischemic Attacks History", "tia"),
                    ("Thromboembolism history", "thromboembolism"))
    stroke_states = [_flag(entities, key) for key, _ in stroke_items]
    any_stroke = any(bool(state) for state in stroke_states)
    lines.append("One criteria of the CHA2DS2-VASc score is to check if the patient has had any history of stroke, "
                 "transient ischemic attacks (TIA), or thromboembolism. "
                 + " ".join(_history_sentence(item, state) for (_, item), state in zip(stroke_items, stroke_states))
                 + " " + add(2 * int(any_stroke), "Because at least one of stroke, tia, or thromboembolism is present"
                             if any_stroke else "Because all of stroke, tia, or thromboembolism are absent"))
    for key, item in (("Vascular disease history", "vascular disease"), ("Diabetes history", "diabetes")):
        stated = _flag(entities, key)
        present = bool(stated)
        lines.append(_history_sentence(item, stated) + " "
                     + add(int(present), f"Because the patient {'has' if present else 'does not have'} {item}"))
    lines.append(f"The patient's CHA2DS2-VASc Score is {score}.")
    return score, "\n".join(lines)


def _explain_has_bled(entities: dict) -> tuple[int, str]:
    age, age_text = _age_years(entities["age"])
    drinks = int(entities.get("Number of Alcoholic Drinks Per Week", 0))
    lines = ["The current HAS-BLED score is 0."]
    score = 0
    if age > 65:
        score += 1
        lines.append(f"{age_text}Because the patient's age is greater than 65 years, we increment the score by 1, "
                     f"making the current score {score - 1} + 1 = {score}.")
    else:
        lines.append(f"{age_text}Because the patient's age is 65 years or less, we don't change the score, keeping the "
                     f"current score at {score}.")
    if drinks >= 8:
        score += 1
        lines.append(f"The patient has {drinks} drinks a week. Because the patient has at least 8 alcoholic drinks a "
                     f"week, we increment the score by 1, making the current score {score - 1} + 1 = {score}.")
    else:
        lines.append(f"The patient has {drinks} drinks a week. Because the patient has less than 8 alcoholic drinks a "
                     f"week, we don't change the score, keeping the current score at {score}.")
    issues = (("Hypertension history", "hypertension"), ("Liver disease criteria for the HAS-BLED rule", "liver disease"),
              ("Renal disease criteria for the HAS-BLED rule", "renal disease"), ("Stroke", "stroke history"),
              ("Prior major bleeding or predisposition to bleeding", "prior bleeding"),
              ("Labile international normalized ratio", "labile inr"),
              ("Medication usage predisposing to bleeding", "medications for bleeding"))
    for key, issue in issues:
        stated = _flag(entities, key)
        if stated:
            score += 1
            lines.append(f"The issue, {issue}, is reported to be present for the patient note and so we increase the "
                         f"score by 1, making the current score {score - 1} + 1 = {score}.")
        elif stated is None:
            lines.append(f"The issue, {issue}, is missing from the patient note and so we assume it to be absent and "
                         f"so we do not change the score, keeping the current score at {score}.")
        else:
            lines.append(f"The issue, {issue}, is reported to be absent for the patient and so we do not change the "
                         f"score, keeping the current score at {score}.")
    lines.append(f"Hence, the patient's HAS-BLED score is {score}.")
    return score, "\n".join(lines)


def _explain_meld_na(entities: dict) -> tuple[int, str]:
    creatinine, creatinine_text = _concentration(entities["creatinine"], "creatinine", "mg/dL")
    bilirubin, bilirubin_text = _concentration(entities["Bilirubin"], "bilirubin", "mg/dL")
    sodium, sodium_text = _concentration(entities["Sodium"], "sodium", "mEq/L")
    inr = float(entities["international normalized ratio"])
    dialysis_twice = bool(_flag(entities, "Dialysis at least twice in the past week"))
    cvvhd = bool(_flag(entities, "Continuous veno-venous hemodialysis for ≥24 hours in the past week"))
    lines = ["The formula for computing the MELD Na is to first apply the following equation: MELD(i) = 0.957 x ln(Cr) "
             "+ 0.378 x ln(bilirubin) + 1.120 x ln(INR) + 0.643. MELD(i) is rounded to the nearest tenth and "
             "multiplied by 10.\nIf the MELD(i) is greater than 11, we apply the following equation: MELD = MELD(i) + "
             "1.32 x (137 - Na) - [0.033 x MELD(i) x (137 - Na)]. The MELD Na score is capped at 40. The concentration "
             "of Na is mEq/L, the concentration of bilirubin is mg/dL, and the concentration of creatinine is mg/dL.",
             creatinine_text.strip()]
    if dialysis_twice or cvvhd:
        what = ("dialysis at least twice in the past week" if dialysis_twice else
                "continuous veno-venous hemodialysis for at least 24 hours in the past week")
        creatinine = 4.0
        lines.append(f"The patient has had {what}, and so we set the creatinine concentration to 4.0 mg/dL.")
    elif creatinine > 4.0:
        creatinine = 4.0
        lines.append("The creatinine concentration is greater than 4.0 mg/dL, and so we set the creatinine "
                     "concentration to 4.0 mg/dL.")
    elif creatinine < 1.0:
        creatinine = 1.0
        lines.append("The creatinine concentration is less than 1.0 mg/dL, and so we set the creatinine "
                     "concentration to 1.0 mg/dL.")
    else:
        lines.append("The patient has not had dialysis at least twice or continuous veno-venous hemodialysis for 24 "
                     "hours in the past week.")
    lines.append(bilirubin_text.strip())
    if bilirubin < 1.0:
        bilirubin = 1.0
        lines.append("The patient's bilirubin concentration is less than 1.0 mg/dL, and so we set the bilirubin "
                     "concentration to 1.0 mg/dL.")
    inr_text = f"The patient's INR is {_n(inr)}."
    if inr < 1.0:
        inr = 1.0
        inr_text += " The patient's INR is less than 1.0, and so we set the INR to 1.0."
    lines.append(inr_text)
    lines.append(sodium_text.strip())
    if sodium > 137.0:
        sodium = 137.0
        lines.append("The sodium concentration is greater than 137 mEq/L, and so we set the sodium concentration to 137 mEq/L.")
    elif sodium < 125.0:
        sodium = 125.0
        lines.append("The sodium concentration is less than 125 mEq/L, and so we set the sodium concentration to 125 mEq/L.")
    raw = _r(0.957 * math.log(creatinine) + 0.378 * math.log(bilirubin) + 1.120 * math.log(inr) + 0.643)
    tenth = round_half_up(raw, 1)
    meld_i = round(10.0 * tenth, 1)
    lines.append(f"Applying the first equation gives us 0.957 x ln({_n(creatinine)}) + 0.378 x ln({_n(bilirubin)}) + "
                 f"1.120 x ln({_n(inr)}) + 0.643 = {_n(raw)}. Rounding to the nearest tenth gives {_n(tenth)}, and "
                 f"multiplying by 10 makes the MELD(i) score {_n(meld_i)}.")
    if meld_i > 11:
        meld = _r(meld_i + 1.32 * (137.0 - sodium) - 0.033 * meld_i * (137.0 - sodium))
        lines.append(f"Because the MELD(i) score is greater than 11, we then apply the second equation, giving us "
                     f"{_n(meld_i)} + 1.32 x (137 - {_n(sodium)}) - [0.033 x {_n(meld_i)} x (137 - {_n(sodium)})] = "
                     f"{_n(meld)}.")
    else:
        meld = meld_i
        lines.append("The patient's MELD(i) score is not greater than 11, and so we do not apply the second equation.")
    score = int(min(round_half_up(meld), 40.0))
    capped = "is capped at 40" if round_half_up(meld) > 40 else "is not more than 40, and so we keep the score as it is"
    lines.append(f"The MELD Na score {capped}. The patient's MELD Na score, rounded to the nearest integer, is "
                 f"{score} points.")
    return score, "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Patients: physiologically plausible values, each fact stored as the Relevant Entities value the note states.

_Sampler = Callable[[random.Random, dict], float]


def _uniform(low: float, high: float, digits: int = 0) -> _Sampler:
    def sample(rng: random.Random, _: dict) -> float:
        value = rng.uniform(low, high)
        return float(round(value)) if digits == 0 else round(value, digits)
    return sample


def _lognormal(median: float, spread: float, low: float, high: float, digits: int) -> _Sampler:
    def sample(rng: random.Random, _: dict) -> float:
        return round(min(max(median * math.exp(rng.gauss(0.0, spread)), low), high), digits)
    return sample


# (entity key, note labels, canonical unit, canonical sampler, alternative units: (unit, probability, to-unit factor,
# digits)). Canonical units are the ones the formulas take.
@dataclass(frozen=True)
class _Lab:
    key: str
    labels: tuple[str, ...]
    unit: str
    sample: _Sampler
    digits: int
    alternatives: tuple[tuple[str, float, float, int], ...] = ()


_LABS: dict[str, _Lab] = {
    "sodium": _Lab("Sodium", ("sodium", "Na", "serum sodium"), "mEq/L", _uniform(128, 148), 0,
                   (("mmol/L", 0.4, 1.0, 0),)),
    "potassium": _Lab("Potassium", ("potassium", "K"), "mEq/L", _uniform(3.1, 5.6, 1), 1),
    "chloride": _Lab("Chloride", ("chloride", "Cl"), "mEq/L", _uniform(94, 110), 0, (("mmol/L", 0.4, 1.0, 0),)),
    "bicarbonate": _Lab("Bicarbonate", ("bicarbonate", "HCO3", "serum bicarbonate"), "mEq/L", _uniform(14, 30), 0,
                        (("mmol/L", 0.4, 1.0, 0),)),
    "bun": _Lab("Blood Urea Nitrogen (BUN)", ("BUN", "blood urea nitrogen"), "mg/dL", _uniform(7, 60), 0),
    "creatinine": _Lab("creatinine", ("creatinine", "serum creatinine"), "mg/dL", _lognormal(1.1, 0.45, 0.5, 4.5, 2), 2,
                       (("µmol/L", 0.25, 10000.0 / 113.12, 0),)),
    "glucose": _Lab("Glucose", ("glucose", "blood glucose", "serum glucose"), "mg/dL", _uniform(72, 240), 0,
                    (("mmol/L", 0.25, 10.0 / 180.16, 1),)),
    "calcium": _Lab("Calcium", ("calcium", "total calcium", "serum calcium"), "mg/dL", _uniform(7.0, 10.6, 1), 1,
                    (("mmol/L", 0.25, 10.0 / 40.08, 2),)),
    "albumin": _Lab("Albumin", ("albumin", "serum albumin"), "g/dL", _uniform(1.8, 4.8, 1), 1,
                    (("g/L", 0.25, 10.0, 0),)),
    "total_cholesterol": _Lab("Total cholesterol", ("total cholesterol",), "mg/dL", _uniform(140, 300), 0,
                              (("mmol/L", 0.25, 10.0 / 386.65, 2),)),
    "hdl": _Lab("high-density lipoprotein cholesterol", ("HDL cholesterol", "HDL"), "mg/dL", _uniform(28, 85), 0,
                (("mmol/L", 0.25, 10.0 / 386.65, 2),)),
    "triglycerides": _Lab("Triglycerides", ("triglycerides",), "mg/dL", _uniform(50, 390), 0,
                          (("mmol/L", 0.25, 10.0 / 885.7, 2),)),
    "bilirubin": _Lab("Bilirubin", ("total bilirubin", "bilirubin"), "mg/dL", _lognormal(1.2, 0.8, 0.3, 15.0, 1), 1),
    "inr": _Lab("international normalized ratio", ("INR",), "", _uniform(0.9, 2.4, 2), 2),
    "hemoglobin": _Lab("Hemoglobin", ("hemoglobin", "Hb"), "g/dL", _uniform(8.5, 16.5, 1), 1),
    "wbc": _Lab("White blood cell count", ("white blood cell count", "WBC"), "x10^3/µL", _uniform(4.0, 16.0, 1), 1),
    "platelets": _Lab("Platelet count", ("platelets", "platelet count"), "x10^3/µL", _uniform(110, 420), 0),
    "ast": _Lab("Aspartate aminotransferase", ("AST",), "U/L", _uniform(14, 120), 0),
    "alt": _Lab("Alanine aminotransferase", ("ALT",), "U/L", _uniform(10, 140), 0),
    "magnesium": _Lab("Magnesium", ("magnesium", "Mg"), "mg/dL", _uniform(1.6, 2.6, 1), 1),
    "lactate": _Lab("Lactate", ("lactate",), "mmol/L", _uniform(0.6, 4.0, 1), 1),
}
_DISTRACTOR_LABS = ("potassium", "hemoglobin", "wbc", "platelets", "ast", "alt", "magnesium", "lactate", "bun",
                    "glucose", "creatinine", "calcium", "albumin", "sodium", "chloride", "bicarbonate")

# History items: entity key, how the note states them when present, and the noun used when the note denies them.
_HISTORY: dict[str, tuple[str, tuple[str, ...], str]] = {
    "chf": ("Congestive Heart Faliure",  # MedCalc-Bench's own key spelling
            ("congestive heart failure", "heart failure with reduced ejection fraction", "chronic systolic heart failure"),
            "heart failure"),
    "hypertension": ("Hypertension history",
                     ("hypertension", "long-standing hypertension", "essential hypertension treated with amlodipine"),
                     "hypertension"),
    "stroke": ("Stroke", ("an ischemic stroke two years ago", "a prior left middle cerebral artery stroke",
                          "a cerebrovascular accident with residual left-sided weakness"), "stroke"),
    "tia": ("Transient Ischemic Attacks History", ("a transient ischemic attack last year", "two prior TIAs"),
            "transient ischemic attack"),
    "thromboembolism": ("Thromboembolism history", ("a pulmonary embolism three years ago",
                                                    "a deep vein thrombosis of the left leg", "a prior systemic embolism"),
                        "thromboembolism"),
    "vascular": ("Vascular disease history", ("a prior myocardial infarction", "peripheral artery disease",
                                              "complex aortic plaque seen on imaging"), "vascular disease"),
    "diabetes": ("Diabetes history", ("type 2 diabetes mellitus", "insulin-dependent diabetes",
                                      "diabetes mellitus on metformin"), "diabetes"),
    "uncontrolled_hypertension": ("Hypertension history",
                                  ("poorly controlled hypertension with systolic readings above 160 mm Hg",
                                   "uncontrolled hypertension (systolic pressures of 165-180 mm Hg at home)"),
                                  "hypertension"),
    "renal": ("Renal disease criteria for the HAS-BLED rule",
              ("end-stage renal disease on hemodialysis", "a kidney transplant",
               "chronic kidney disease with a baseline creatinine of 2.8 mg/dL"),
              "kidney disease"),
    "liver": ("Liver disease criteria for the HAS-BLED rule", ("alcoholic cirrhosis", "cirrhosis secondary to hepatitis C"),
              "liver disease"),
    "bleeding": ("Prior major bleeding or predisposition to bleeding",
                 ("a major gastrointestinal bleed last year requiring transfusion", "a prior upper GI bleed"),
                 "major bleeding"),
    "labile_inr": ("Labile international normalized ratio",
                   ("labile INRs on warfarin, with less than 60% of values in the therapeutic range",), "labile INR"),
    "bleeding_meds": ("Medication usage predisposing to bleeding", ("daily aspirin", "ibuprofen taken regularly for knee pain",
                                                                    "clopidogrel"),
                      "antiplatelet or NSAID use"),
}
_MEDICATION_ITEMS = ("bleeding_meds",)
_DISTRACTOR_CONDITIONS = ("osteoarthritis", "gastroesophageal reflux disease", "hypothyroidism", "gout", "asthma",
                          "depression", "hyperlipidemia", "chronic low back pain", "migraine", "glaucoma",
                          "obstructive sleep apnea", "anemia")
_COMPLAINTS = ("chest pain", "shortness of breath", "fatigue", "palpitations", "abdominal pain", "dizziness",
               "a fall at home", "fever and cough", "bilateral leg swelling", "confusion", "nausea and vomiting",
               "worsening exertional dyspnea", "weakness", "a syncopal episode", "poor oral intake")
_SETTINGS = ("presented to the emergency department", "was seen in the outpatient clinic", "was admitted to the hospital",
             "was referred to the medicine service", "came to the clinic")
_CLOSINGS = ("Further workup was arranged.", "The patient was admitted for further management.",
             "Treatment was started and the patient was monitored closely.", "A follow-up visit was scheduled.",
             "The medical team discussed the findings with the patient and family.", "")


@dataclass
class _Patient:
    facts: dict = field(default_factory=dict)  # fact name -> entity value ([value, unit], bool or int)
    canonical: dict = field(default_factory=dict)  # lab name -> value in canonical units
    history: dict = field(default_factory=dict)  # history item -> present
    shown: dict = field(default_factory=dict)  # lab name -> value as the note writes it ('1.0', '138')


def _decimal_text(value: float, digits: int) -> str:
    """A lab value as a note writes it: no decimals for integer-precision labs, else at least one decimal."""
    if digits == 0:
        return str(int(round(value)))
    text = f"{value:.{digits}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _display_lab(rng: random.Random, lab: _Lab, value: float) -> tuple[list, str]:
    """(entity [value, unit], value text) in the canonical unit or, by chance, one of the lab's alternatives."""
    roll = rng.random()
    unit, digits = lab.unit, lab.digits
    for alternative, probability, factor, alternative_digits in lab.alternatives:
        if roll < probability:
            unit, digits = alternative, alternative_digits
            value = value * factor
            break
        roll -= probability
    value = float(round(value)) if digits == 0 else round(value, digits)
    return [value, unit], _decimal_text(value, digits)


def _display_height(rng: random.Random, height_cm: float) -> list:
    roll = rng.random()
    if roll < 0.65:
        return [height_cm, "cm"]
    if roll < 0.8:
        return [round(height_cm / 100.0, 2), "m"]
    inches = round(height_cm / 2.54)
    if roll < 0.9:
        return [inches // 12, "ft", inches % 12, "in"]
    return [float(inches), "in"]


def _display_weight(rng: random.Random, weight_kg: float) -> list:
    return [round(weight_kg / 0.453592, 1), "lbs"] if rng.random() < 0.2 else [weight_kg, "kg"]


def _format_plain(value: float | int) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


def _lab_text(rng: random.Random, name: str, patient: _Patient) -> str:
    label = rng.choice(_LABS[name].labels)
    if name == "inr":
        return f"{label} {patient.shown[name]}"
    joiner = rng.choice((" ", " of ", ": ")) if label[0].islower() else " "
    return f"{label}{joiner}{patient.shown[name]} {patient.facts[name][1]}"


def _height_text(entity: list) -> str:
    if len(entity) == 4:
        return f"{entity[0]} ft {entity[2]} in"
    return f"{_format_plain(entity[0])} {entity[1]}"


def _join(items: Sequence[str], conjunction: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + ("," if len(items) > 2 else "") + f" {conjunction} " + items[-1]


@dataclass(frozen=True)
class CalculatorSpec:
    """One calculator: MedCalc-Bench's identity columns, question, source of the formula, how to sample a patient
    for it and how to solve (with explanation) from the Relevant Entities."""

    calculator_id: int
    name: str
    category: str
    output_type: str
    question: str
    reference: str
    explain: Callable[[dict], tuple[float | int, str]]
    labs: tuple[str, ...] = ()  # required lab facts
    body: tuple[str, ...] = ()  # required body facts: 'height', 'weight'
    vitals: tuple[str, ...] = ()  # required vital facts: 'blood_pressure', 'heart_rate', 'qt'
    history: tuple[str, ...] = ()  # history items (may be stated or left out)
    demographics: tuple[str, ...] = ()  # 'age' / 'sex' entities the calculator uses
    context: tuple[str, ...] = ()  # one of these sentences is added to the note ({He}/{His} filled in)
    overrides: tuple[tuple[str, _Sampler], ...] = ()  # fact -> sampler replacing the default
    age_range: tuple[int, int] = (18, 90)
    no_distractors: tuple[str, ...] = ()  # labs that must not appear as distractors
    extra_entities: Callable[[random.Random, _Patient], dict] | None = None

    def solve(self, entities: dict) -> tuple[float | int, str]:
        """(answer, explanation) from a Relevant Entities dict, as the Ground Truth columns hold them."""
        answer, explanation = self.explain(entities)
        return answer, "\n".join(line.strip() for line in explanation.split("\n"))


def _meld_extras(rng: random.Random, patient: _Patient) -> dict:
    dialysis = rng.random() < 0.15
    cvvhd = (not dialysis) and rng.random() < 0.08
    return {"Dialysis at least twice in the past week": dialysis,
            "Continuous veno-venous hemodialysis for ≥24 hours in the past week": cvvhd}


def _alcohol_extras(rng: random.Random, patient: _Patient) -> dict:
    drinks = rng.choice((0, 0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 20))
    return {"Number of Alcoholic Drinks Per Week": drinks}


def _friedewald_total_cholesterol(rng: random.Random, canonical: dict) -> float:
    """Total cholesterol such that the Friedewald LDL lies in 50-220 mg/dL."""
    return float(round(canonical["hdl"] + canonical["triglycerides"] / 5.0 + rng.uniform(50, 220)))


_SAMPLED_FIRST = ("sodium", "bicarbonate", "hdl", "triglycerides")  # labs other labs' samplers depend on


def _anion_gap_chloride(rng: random.Random, canonical: dict) -> float:
    """Chloride such that the anion gap lies in 3-30 mEq/L."""
    return float(canonical["sodium"] - canonical["bicarbonate"] - round(rng.uniform(3, 30)))


_MEDCALC = "MedCalc-Bench v1.0 (Khandekar et al. 2024)"

CALCULATORS: dict[str, CalculatorSpec] = {
    "creatinine_clearance": CalculatorSpec(
        2, "Creatinine Clearance (Cockcroft-Gault Equation)", "lab", "decimal",
        "What is the patient's Creatinine Clearance using the Cockroft-Gault Equation in terms of mL/min? You should "
        "use the patient's adjusted body weight in kg instead of the patient's actual body weight if the patient is "
        "overweight or obese based on their BMI. If the patient's BMI's normal, set their adjusted body weight to the "
        "minimum of the ideal body and actual weight. If the patient is underweight, please set their adjusted body "
        "weight to their actual body weight.",
        "Cockcroft & Gault, Nephron 1976;16:31-41; weight choice as in the " + _MEDCALC + " question",
        _explain_creatinine_clearance, labs=("creatinine",), body=("height", "weight"), demographics=("sex", "age")),
    "cha2ds2_vasc": CalculatorSpec(
        4, "CHA2DS2-VASc Score for Atrial Fibrillation Stroke Risk", "risk", "integer",
        "What is the patient's CHA2DS2-VASc Score?",
        "Lip et al., Chest 2010;137:263-272",
        _explain_cha2ds2_vasc,
        history=("chf", "hypertension", "stroke", "tia", "thromboembolism", "vascular", "diabetes"),
        demographics=("sex", "age"), age_range=(40, 95)),
    "mean_arterial_pressure": CalculatorSpec(
        5, "Mean Arterial Pressure (MAP)", "physical", "decimal",
        "What is patient's mean arterial pressure in mm Hg?",
        "MAP = DBP + (SBP - DBP)/3 (standard physiology texts, e.g. Klabunde, Cardiovascular Physiology Concepts)",
        _explain_map, vitals=("blood_pressure",)),
    "bmi": CalculatorSpec(
        6, "Body Mass Index (BMI)", "physical", "decimal",
        "What is the patient's body mass mass index (BMI)? Your answer should be in terms of kg/m².",
        "WHO / CDC adult BMI definition (weight in kg / height in m squared)",
        _explain_bmi, body=("height", "weight")),
    "calcium_correction": CalculatorSpec(
        7, "Calcium Correction for Hypoalbuminemia", "lab", "decimal",
        "Using the Calcium Correction for Hypoalbuminemia formula, what is the patient's corrected calcium in mg/dL? "
        "Your may set your normal albumin concentration to be 4 g/dL.",
        "Payne et al., BMJ 1973;4:643-646",
        _explain_calcium_correction, labs=("calcium", "albumin"),
        overrides=(("albumin", _uniform(1.6, 4.2, 1)),)),
    "ideal_body_weight": CalculatorSpec(
        10, "Ideal Body Weight", "physical", "decimal",
        "Using the Ideal Body Weight Formula, what is the patient's ideal body weight in terms of kg?",
        "Devine, Drug Intell Clin Pharm 1974;8:650-655",
        _explain_ideal_body_weight, body=("height",), demographics=("sex",)),
    "qtc_bazett": CalculatorSpec(
        11, "QTc Bazett Calculator", "physical", "decimal",
        "Using the Bazett Formula for corrected QT interval, what is the patient's corrected QT interval in msec?",
        "Bazett, Heart 1920;7:353-370",
        _explain_qtc_bazett, vitals=("heart_rate", "qt")),
    "meld_na": CalculatorSpec(
        23, "MELD Na (UNOS/OPTN)", "lab", "decimal",
        "What is the patient's MELDA Na score?",
        "Kim et al., NEJM 2008;359:1018-1026; OPTN/UNOS policy 9.1 (2016 MELD-Na implementation)",
        _explain_meld_na, labs=("creatinine", "bilirubin", "inr", "sodium"),
        overrides=(("sodium", _uniform(120, 142)), ("bilirubin", _lognormal(2.5, 0.8, 0.4, 25.0, 1)),
                   ("inr", _uniform(0.9, 3.5, 2)), ("creatinine", _lognormal(1.3, 0.55, 0.5, 6.0, 2))),
        context=("{He} has known cirrhosis and is being evaluated for liver transplantation.",
                 "Ascites was noted on examination.", "{He} has a history of alcohol-related liver disease."),
        extra_entities=_meld_extras),
    "has_bled": CalculatorSpec(
        25, "HAS-BLED Score for Major Bleeding Risk", "risk", "integer",
        "What is the patient's HAS-BLED score?",
        "Pisters et al., Chest 2010;138:1093-1100",
        _explain_has_bled,
        history=("uncontrolled_hypertension", "renal", "liver", "stroke", "bleeding", "labile_inr", "bleeding_meds"),
        demographics=("age",), age_range=(40, 92), no_distractors=("creatinine", "ast", "alt"),
        context=("{He} is on warfarin for atrial fibrillation.",
                 "{He} is being started on anticoagulation for atrial fibrillation."),
        extra_entities=_alcohol_extras),
    "sodium_correction": CalculatorSpec(
        26, "Sodium Correction for Hyperglycemia", "lab", "decimal",
        "What is the patient's corrected sodium concentration in terms of mEq/L?",
        "Hillier et al., Am J Med 1999;106:399-403 (2.4 mEq/L per 100 mg/dL glucose)",
        _explain_sodium_correction, labs=("sodium", "glucose"),
        overrides=(("glucose", _uniform(150, 900)), ("sodium", _uniform(120, 142)))),
    "serum_osmolality": CalculatorSpec(
        30, "Serum Osmolality", "lab", "decimal",
        "What is the patient's serum osmolality in terms of mOsm/kg?",
        "Dorwart & Chalmers, Clin Chem 1975;21:190-194",
        _explain_serum_osmolality, labs=("sodium", "bun", "glucose"),
        overrides=(("glucose", _uniform(70, 600)),)),
    "free_water_deficit": CalculatorSpec(
        38, "Free Water Deficit", "lab", "decimal",
        "What is the patient's free water deficit in terms of liters? You may take the ideal sodium concentration to "
        "be 140 mEq/L.",
        "Adrogué & Madias, NEJM 2000;342:1493-1499 (TBW fractions as MDCalc)",
        _explain_free_water_deficit, labs=("sodium",), body=("weight",),
        overrides=(("sodium", _uniform(138, 170)),), demographics=("age", "sex"), age_range=(8, 92)),
    "anion_gap": CalculatorSpec(
        39, "Anion Gap", "lab", "decimal",
        "What is the patient's anion gap in terms of mEq/L?",
        "Emmett & Narins, Medicine 1977;56:38-54 (AG = Na - (Cl + HCO3))",
        _explain_anion_gap, labs=("sodium", "chloride", "bicarbonate"),
        overrides=(("bicarbonate", _uniform(8, 30)), ("chloride", _anion_gap_chloride))),
    "ldl": CalculatorSpec(
        44, "LDL Calculated", "lab", "decimal",
        "What is the patient's LDL cholestrol concentration? Please outuput your answer in terms of mg/dL.",
        "Friedewald et al., Clin Chem 1972;18:499-502",
        _explain_ldl, labs=("total_cholesterol", "hdl", "triglycerides"),
        overrides=(("total_cholesterol", _friedewald_total_cholesterol),)),
    "qtc_fridericia": CalculatorSpec(
        56, "QTc Fridericia Calculator", "physical", "decimal",
        "Using the Fridericia Formula for corrected QT interval, what is the patient's corrected QT interval in "
        "terms of msec?",
        "Fridericia, Acta Med Scand 1920;53:469-486",
        _explain_qtc_fridericia, vitals=("heart_rate", "qt")),
    "body_surface_area": CalculatorSpec(
        60, "Body Surface Area Calculator", "physical", "decimal",
        "What is the patient's body surface area? Please output your answer in terms of m².",
        "Mosteller, NEJM 1987;317:1098",
        _explain_body_surface_area, body=("height", "weight")),
    "adjusted_body_weight": CalculatorSpec(
        62, "Adjusted Body Weight", "physical", "decimal",
        "Using the adjusted body weight formula, what is the patient's adjusted body weight in terms of kg?",
        "IBW (Devine 1974) + 0.4 x (actual - IBW) (e.g. Winter, Basic Clinical Pharmacokinetics)",
        _explain_adjusted_body_weight, body=("height", "weight"), demographics=("sex",)),
    "delta_gap": CalculatorSpec(
        63, "Delta Gap", "lab", "decimal",
        "What is the patient's delta gap in mEq/L?",
        "Wrenn, Ann Emerg Med 1990;19:1310-1313 (delta gap = AG - 12)",
        _explain_delta_gap, labs=("sodium", "chloride", "bicarbonate"),
        overrides=(("bicarbonate", _uniform(8, 30)), ("chloride", _anion_gap_chloride))),
    "albumin_corrected_anion_gap": CalculatorSpec(
        65, "Albumin Corrected Anion Gap", "lab", "decimal",
        "What is the patient's albumin corrected anion gap in mEq/L?",
        "Figge et al., Crit Care Med 1998;26:1807-1810",
        _explain_albumin_corrected_anion_gap, labs=("sodium", "chloride", "bicarbonate", "albumin"),
        overrides=(("bicarbonate", _uniform(8, 30)), ("chloride", _anion_gap_chloride))),
}


def _sample_patient(rng: random.Random, spec: CalculatorSpec) -> _Patient:
    patient = _Patient()
    sex = rng.choice(("Male", "Female"))
    patient.facts["sex"] = sex
    patient.facts["age"] = [rng.randint(*spec.age_range), "years"]
    height_cm = min(max(rng.gauss(175.5 if sex == "Male" else 162.0, 7.0), 148.0), 200.0)
    height_cm = float(round(height_cm)) if rng.random() < 0.6 else round(height_cm, 1)
    bmi = min(max(rng.gauss(27.0, 5.5), 16.0), 46.0)
    weight_kg = round(bmi * (height_cm / 100.0) ** 2, 1)
    if patient.facts["age"][0] < 18:  # children: smaller bodies
        height_cm = round(110.0 + 4.5 * (patient.facts["age"][0] - 6) + rng.uniform(-6, 6), 1)
        weight_kg = round(rng.uniform(15.5, 21.0) * (height_cm / 100.0) ** 2, 1)
    patient.facts["height"] = _display_height(rng, height_cm)
    patient.facts["weight"] = _display_weight(rng, weight_kg)

    patient.history = {item: rng.random() < 0.4 for item in spec.history}
    hypertensive = patient.history.get("hypertension") or patient.history.get("uncontrolled_hypertension")
    systolic = rng.randint(138, 188) if hypertensive else rng.randint(92, 138)
    diastolic = rng.randint(50, min(systolic - 25, 112))
    patient.facts["blood_pressure"] = (float(systolic), float(diastolic))
    patient.facts["heart_rate"] = rng.randint(46, 138)
    # QT shortens as the heart rate rises: draw a rate-corrected QT, then undo a Fridericia-type correction.
    corrected_qt = min(max(rng.gauss(440.0, 35.0), 360.0), 560.0)
    patient.facts["qt"] = int(round(corrected_qt * (60.0 / patient.facts["heart_rate"]) ** (1.0 / 3.0)))
    patient.facts["resp_rate"] = rng.randint(12, 28)
    patient.facts["temperature"] = round(rng.uniform(36.1, 39.3), 1)
    patient.facts["spo2"] = rng.randint(89, 100)

    overrides = dict(spec.overrides)
    for name in _SAMPLED_FIRST:
        patient.canonical[name] = (overrides.get(name) or _LABS[name].sample)(rng, patient.canonical)
    for name, lab in _LABS.items():
        if name not in patient.canonical:
            patient.canonical[name] = (overrides.get(name) or lab.sample)(rng, patient.canonical)
    for name, lab in _LABS.items():
        value = patient.canonical[name]
        if name == "inr":
            patient.facts[name], patient.shown[name] = value, _decimal_text(value, lab.digits)
        else:
            patient.facts[name], patient.shown[name] = _display_lab(rng, lab, value)
    return patient


def _article(age: int) -> str:
    """'an' before ages read with a vowel sound (8, 11, 18, 80-89)."""
    return "an" if age in (8, 11, 18) or 80 <= age <= 89 else "a"


def _pronouns(sex: str, age: int) -> dict:
    male = sex == "Male"
    person = ("man" if male else "woman") if age >= 18 else ("boy" if male else "girl")
    return {"he": "he" if male else "she", "He": "He" if male else "She", "his": "his" if male else "her",
            "His": "His" if male else "Her", "man": person, "male": "male" if male else "female"}


def _render_note(rng: random.Random, spec: CalculatorSpec, patient: _Patient, stated_history: dict,
                 extras: dict, distractor_labs: Sequence[str]) -> str:
    p = _pronouns(patient.facts["sex"], patient.facts["age"][0])
    age = patient.facts["age"][0]
    article = _article(age)
    opening = rng.choice((
        f"{article.capitalize()} {age}-year-old {p['man']} {rng.choice(_SETTINGS)} with {rng.choice(_COMPLAINTS)}.",
        f"{article.capitalize()} {age} year old {p['male']} {rng.choice(_SETTINGS)} complaining of {rng.choice(_COMPLAINTS)}.",
        f"The patient is {article} {age}-year-old {p['man']} who {rng.choice(_SETTINGS)} for evaluation of "
        f"{rng.choice(_COMPLAINTS)}.",
    ))
    sentences = [opening]

    medications = [rng.choice(_HISTORY[item][1]) for item, state in stated_history.items()
                   if state and item in _MEDICATION_ITEMS]
    present = [rng.choice(_HISTORY[item][1]) for item, state in stated_history.items()
               if state and item not in _MEDICATION_ITEMS]
    conditions = present + rng.sample(_DISTRACTOR_CONDITIONS, rng.randint(0, 2))
    rng.shuffle(conditions)
    if conditions:
        sentences.append(rng.choice((
            f"{p['His']} past medical history is notable for {_join(conditions)}.",
            f"{p['He']} has a history of {_join(conditions)}.",
            f"Past history includes {_join(conditions)}.",
        )))
    denied = [_HISTORY[item][2] for item, state in stated_history.items() if state is False]
    if medications:
        sentences.append(f"{p['His']} medications include {_join(medications)}.")
    denied = _join(list(dict.fromkeys(denied)), "or")
    if denied:
        sentences.append(rng.choice((f"{p['He']} has no history of {denied}.", f"{p['He']} denies any prior {denied}.",
                                     f"There is no known {denied}.")))
    if "Number of Alcoholic Drinks Per Week" in extras:
        drinks = extras["Number of Alcoholic Drinks Per Week"]
        sentences.append(f"{p['He']} does not drink alcohol." if drinks == 0 else
                         f"{p['He']} reports drinking about {drinks} alcoholic drink{'s' if drinks != 1 else ''} per week.")
    if extras.get("Dialysis at least twice in the past week"):
        sentences.append(f"{p['He']} received hemodialysis three times in the past week.")
    if extras.get("Continuous veno-venous hemodialysis for ≥24 hours in the past week"):
        sentences.append(f"{p['He']} was on continuous veno-venous hemodialysis for 48 hours earlier this week.")
    if spec.context:
        sentences.append(rng.choice(spec.context).format(**p))

    # Vitals, with body measurements; required ones always, others as distractors.
    systolic, diastolic = patient.facts["blood_pressure"]
    vitals = {
        "blood_pressure": f"blood pressure {format_number(systolic)}/{format_number(diastolic)} mm Hg",
        "heart_rate": rng.choice((f"heart rate {patient.facts['heart_rate']} beats per minute",
                                  f"pulse {patient.facts['heart_rate']}/min")),
        "resp_rate": f"respiratory rate {patient.facts['resp_rate']}/min",
        "temperature": f"temperature {patient.facts['temperature']} °C",
        "spo2": f"oxygen saturation {patient.facts['spo2']}% on room air",
    }
    shown = [name for name in vitals if name in spec.vitals or rng.random() < 0.6]
    if spec.history and "blood_pressure" in shown and not spec.vitals:
        shown.remove("blood_pressure")  # keep measured pressures from muddying the hypertension history items
    rng.shuffle(shown)
    if shown:
        opening_words = rng.choice(("On examination, ", "Vital signs: ", "On arrival, "))
        sentences.append(opening_words + ", ".join(vitals[v] for v in shown) + ".")
    if "qt" in spec.vitals:
        sentences.append(rng.choice((
            f"An ECG showed sinus rhythm at {patient.facts['heart_rate']} bpm with a QT interval of {patient.facts['qt']} msec.",
            f"The electrocardiogram demonstrated a QT interval of {patient.facts['qt']} msec.",
        )))
    height = _height_text(patient.facts["height"])
    weight = f"{_format_plain(patient.facts['weight'][0])} {patient.facts['weight'][1]}"
    if spec.body == ("height", "weight") or rng.random() < 0.4:  # otherwise only what the calculator needs
        sentences.append(rng.choice((f"{p['He']} is {height} tall and weighs {weight}.",
                                     f"Height {height}, weight {weight}.",
                                     f"{p['His']} weight was {weight} and {p['his']} height {height}.")))
    elif spec.body == ("height",):
        sentences.append(rng.choice((f"{p['He']} is {height} tall.", f"{p['His']} measured height is {height}.")))
    elif spec.body == ("weight",):
        sentences.append(rng.choice((f"{p['He']} weighs {weight}.", f"{p['His']} weight is {weight}.")))

    labs = list(spec.labs) + list(distractor_labs)
    rng.shuffle(labs)
    if labs:
        lab_texts = [_lab_text(rng, name, patient) for name in labs]
        sentences.append(rng.choice(("Laboratory studies showed ", "Labs were notable for ", "Blood tests revealed ",
                                     "Initial laboratory results: ")) + _join(lab_texts) + ".")
    closing = rng.choice(_CLOSINGS)
    if closing:
        sentences.append(closing)
    return " ".join(sentences)


def _entities(spec: CalculatorSpec, patient: _Patient, stated_history: dict, extras: dict) -> dict:
    entities: dict = {name: patient.facts[name] for name in spec.demographics}
    for name in spec.body:
        entities[name] = patient.facts[name]
    if "blood_pressure" in spec.vitals:
        systolic, diastolic = patient.facts["blood_pressure"]
        entities["Systolic Blood Pressure"] = [systolic, "mm hg"]
        entities["Diastolic Blood Pressure"] = [diastolic, "mm hg"]
    if "heart_rate" in spec.vitals:
        entities["Heart Rate or Pulse"] = [patient.facts["heart_rate"], "beats per minute"]
    if "qt" in spec.vitals:
        entities["QT interval"] = [patient.facts["qt"], "msec"]
    for name in spec.labs:
        entities[_LABS[name].key] = patient.facts[name]
    for item, state in stated_history.items():
        if state is not None:
            entities[_HISTORY[item][0]] = state
    entities.update(extras)
    return entities


def _make_row(rng: random.Random, spec: CalculatorSpec, row_number: int, note_id: str) -> dict:
    patient = _sample_patient(rng, spec)
    # Present history items are always stated; absent ones are denied in the note or left out (MedCalc-Bench then
    # assumes them absent).
    stated_history = {item: True if present else (False if rng.random() < 0.6 else None)
                      for item, present in patient.history.items()}
    extras = spec.extra_entities(rng, patient) if spec.extra_entities else {}
    pool = [name for name in _DISTRACTOR_LABS if name not in spec.labs and name not in spec.no_distractors]
    distractors = rng.sample(pool, rng.randint(2, 5))
    note = _render_note(rng, spec, patient, stated_history, extras, distractors)
    entities = _entities(spec, patient, stated_history, extras)
    answer, explanation = spec.solve(entities)
    lower, upper = answer_limits(answer, spec.output_type)
    return {
        "Row Number": str(row_number),
        "Calculator ID": str(spec.calculator_id),
        "Calculator Name": spec.name,
        "Category": spec.category,
        "Output Type": spec.output_type,
        "Note ID": note_id,
        "Note Type": "Template",
        "Patient Note": note,
        "Question": spec.question,
        "Relevant Entities": repr(entities),
        "Ground Truth Answer": format_number(answer),
        "Lower Limit": lower,
        "Upper Limit": upper,
        "Ground Truth Explanation": explanation,
    }


def generate_rows(n: int, seed: int = 0, calculators: Sequence[str] | None = None) -> list[dict]:
    """``n`` synthetic MedCalc-Bench rows (dicts of 14 string columns), cycling through ``calculators`` (keys of
    ``CALCULATORS``; all by default) in a seeded order. Row ``i`` depends only on (seed, i, calculators), so a
    longer list extends a shorter one."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    names = list(CALCULATORS) if calculators is None else list(calculators)
    unknown = [name for name in names if name not in CALCULATORS]
    if unknown or not names:
        raise ValueError(f"unknown calculator(s) {unknown}; choose from {sorted(CALCULATORS)}")
    order = sorted(names)
    random.Random(f"talr-medcalc-order:{seed}").shuffle(order)
    rows = []
    for index in range(n):
        rng = random.Random(f"talr-medcalc:{seed}:{index}")
        spec = CALCULATORS[order[index % len(order)]]
        rows.append(_make_row(rng, spec, index + 1, f"synthetic-{seed}-{index + 1}"))
    return rows


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write rows with MedCalc-Bench's header, readable by the same loader as the real ``test_data.csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


# Where MedCalc-Bench's files lie inside a benchmark data folder (see ../shared/data/README.md).
TEST_FILE = "medcalc_bench/test_data.csv"
TRAIN_FILE = "medcalc_bench/train_subset/valid_split.csv"


def write_data_folder(root: str | Path, n_train: int, n_test: int, seed: int = 0,
                      calculators: Sequence[str] | None = None) -> Path:
    """Write synthetic train and test files where a benchmark data folder keeps MedCalc-Bench's, so the MedCalc-Bench
    loader reads them unchanged (point ``TALR_DATA_DIR`` or ``data_dir`` at ``root``). Train rows use seed
    ``2 * seed`` and test rows ``2 * seed + 1``: no note is shared."""
    root = Path(root)
    write_csv(generate_rows(n_train, 2 * seed, calculators), root / TRAIN_FILE)
    write_csv(generate_rows(n_test, 2 * seed + 1, calculators), root / TEST_FILE)
    return root

