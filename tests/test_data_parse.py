"""dgmix.data.records / ground_truth: file-name parsing, attribute and ground-truth CSVs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dgmix.data import (
    ClipRecord,
    canonical_machine,
    parse_attributes,
    parse_filename,
    read_attributes_csv,
    read_ground_truth,
    strip_machine_prefix,
)
from dgmix.errors import InputError

# Real DCASE 2023 dev file names (machine type, name, section, domain, split, label, id, attrs).
REAL_NAMES = [
    ("valve", "section_00_source_test_anomaly_0025_pat_01.wav", "source", "test", "anomaly",
     "0025", {"pat": "01"}),
    ("valve", "section_00_target_train_normal_0003_pat_02.wav", "target", "train", "normal",
     "0003", {"pat": "02"}),
    ("ToyCar", "section_00_source_test_normal_0028_car_C2_spd_34V_mic_1.wav", "source", "test",
     "normal", "0028", {"car": "C2", "spd": "34V", "mic": "1"}),
    ("ToyTrain", "section_00_target_test_anomaly_0015_car_A2_spd_6_mic_2.wav", "target", "test",
     "anomaly", "0015", {"car": "A2", "spd": "6", "mic": "2"}),
    ("bearing", "section_00_target_test_anomaly_0021_vel_8_loc_G.wav", "target", "test",
     "anomaly", "0021", {"vel": "8", "loc": "G"}),
    ("fan", "section_00_source_test_anomaly_0022_m-n_W.wav", "source", "test", "anomaly", "0022",
     {"m-n": "W"}),
    ("gearbox", "section_00_target_test_anomaly_0040_volt_1.5_wt_130.wav", "target", "test",
     "anomaly", "0040", {"volt": "1.5", "wt": "130"}),
    ("slider", "section_00_source_test_normal_0027_vel_730_ac_0.11.wav", "source", "test",
     "normal", "0027", {"vel": "730", "ac": "0.11"}),
    ("slider", "section_00_source_train_normal_0959_vel_490_ac_0.05.wav", "source", "train",
     "normal", "0959", {"vel": "490", "ac": "0.05"}),
]


@pytest.mark.parametrize("machine, name, domain, split, label, clip, attrs", REAL_NAMES)
def test_real_dcase_names(machine, name, domain, split, label, clip, attrs) -> None:
    # The folder gives the machine type; the split folder is irrelevant when the name has one.
    rec = parse_filename(Path("/data/dev_data") / machine / "test" / name)
    assert rec.machine == machine
    assert (rec.section, rec.domain, rec.split, rec.label, rec.clip_id) == (
        "00", domain, split, label, clip)
    raw = name[: -len(".wav")].split(f"_{clip}_", 1)[1]
    assert rec.attributes == {**attrs, "_raw": raw}
    assert rec.name == name


def test_prefixed_names_take_machine_from_prefix() -> None:
    folder = Path("/x/result/weekly/data_collection")
    name = "ToyCar_test_section_00_source_test_normal_0028_car_C2_spd_34V_mic_1.wav"
    rec = parse_filename(folder / name)
    assert (rec.machine, rec.split, rec.label, rec.domain) == ("ToyCar", "test", "normal", "source")
    assert rec.dcase_name == "section_00_source_test_normal_0028_car_C2_spd_34V_mic_1.wav"
    rec = parse_filename(folder / "valve_train_section_00_source_train_normal_0095_pat_01.wav")
    assert (rec.machine, rec.split, rec.clip_id) == ("valve", "train", "0095")
    rec = parse_filename(folder / "fan_test_section_00_source_test_anomaly_0022_m-n_W.wav")
    assert rec.machine == "fan" and rec.attributes["m-n"] == "W"
    # an explicit machine wins over the prefix
    assert parse_filename(folder / "fan_test_section_00_source_test_anomaly_0022_m-n_W.wav",
                          machine="Valve").machine == "valve"


def test_names_without_attributes_and_other_sections() -> None:
    rec = parse_filename(Path("d/gearbox/train/section_05_target_train_normal_0009.wav"))
    assert (rec.section, rec.domain, rec.split, rec.label, rec.clip_id) == (
        "05", "target", "train", "normal", "0009")
    assert rec.attributes == {}


def test_odd_attribute_strings_keep_raw() -> None:
    assert parse_attributes("car_A1_spd_28V_mic_1_noise_1") == {
        "car": "A1", "spd": "28V", "mic": "1", "noise": "1",
        "_raw": "car_A1_spd_28V_mic_1_noise_1"}
    assert parse_attributes("pat_00") == {"pat": "00", "_raw": "pat_00"}
    assert parse_attributes("vel_6_loc_A") == {"vel": "6", "loc": "A", "_raw": "vel_6_loc_A"}
    assert parse_attributes("volt_1.5_wt_150") == {"volt": "1.5", "wt": "150",
                                                   "_raw": "volt_1.5_wt_150"}
    assert parse_attributes("noAttribute") == {"_extra": "noAttribute", "_raw": "noAttribute"}
    assert parse_attributes("strength_1_ambient") == {"strength": "1", "_extra": "ambient",
                                                      "_raw": "strength_1_ambient"}
    assert parse_attributes("") == {} and parse_attributes(None) == {}


def test_eval_test_names_have_unknown_label_and_domain() -> None:
    rec = parse_filename(Path("/d/eval_data/fan/test/section_03_0042.wav"))
    assert (rec.machine, rec.section, rec.domain, rec.split, rec.label, rec.clip_id) == (
        "fan", "03", "unknown", "test", "unknown", "0042")
    # without a split folder, evaluation names are test clips
    assert parse_filename(Path("/d/fan/section_04_0001.wav")).split == "test"


def test_dcase2020_names() -> None:
    rec = parse_filename(Path("/d/dev_data/ToyConveyor/test/anomaly_id_02_00000012.wav"))
    assert (rec.machine, rec.section, rec.domain, rec.split, rec.label, rec.clip_id) == (
        "ToyConveyor", "02", "source", "test", "anomaly", "00000012")
    rec = parse_filename(Path("/d/dev_data/fan/train/normal_id_00_00000000.wav"))
    assert (rec.section, rec.split, rec.label) == ("00", "train", "normal")
    rec = parse_filename(Path("/d/dev_data/fan/test/normal_id_04_00000001.wav"))
    assert (rec.section, rec.split, rec.label) == ("04", "test", "normal")
    rec = parse_filename(Path("/d/eval_data/fan/test/id_01_00000003.wav"))
    assert (rec.section, rec.split, rec.label) == ("01", "test", "unknown")


def test_mimii_2019_folders() -> None:
    rec = parse_filename(Path("/d/sample_dataset/fan/id_00/abnormal/00000000.wav"))
    assert (rec.machine, rec.section, rec.domain, rec.split, rec.label, rec.clip_id) == (
        "fan", "00", "unknown", "test", "anomaly", "00000000")
    rec = parse_filename(Path("/d/-6_dB_valve/valve/id_06/normal/00000101.wav"))
    assert (rec.machine, rec.section, rec.label) == ("valve", "06", "normal")
    rec = parse_filename(Path("/d/fan/id_02/normal/1.wav"), split="train")
    assert (rec.split, rec.split_given) == ("train", True)


def test_plain_layout() -> None:
    rec = parse_filename(Path("/d/my_pump/train/rec_001.wav"))
    assert (rec.machine, rec.section, rec.domain, rec.split, rec.label) == (
        "my_pump", "00", "unknown", "train", "normal")
    rec = parse_filename(Path("/d/my_pump/test/anomaly/rec_7.wav"))
    assert (rec.split, rec.label, rec.clip_id) == ("test", "anomaly", "rec_7")
    assert parse_filename(Path("/d/my_pump/test/normal/rec_8.wav")).label == "normal"


def test_machine_names_are_canonicalised() -> None:
    for given, want in [("toycar", "ToyCar"), ("TOYTRAIN", "ToyTrain"), ("Fan", "fan"),
                        ("VALVE", "valve"), ("Bearing", "bearing"), ("pump", "pump"),
                        ("MyMachine", "MyMachine")]:
        assert canonical_machine(given) == want
    rec = parse_filename(Path("/d/dev_data/Slider/test/section_01_source_test_normal_0001.wav"))
    assert rec.machine == "slider"
    # a folder named like a known machine type beats a nearer unknown folder
    rec = parse_filename(Path("/d/fan/batch1/section_00_source_test_normal_0001.wav"))
    assert rec.machine == "fan"


@pytest.mark.parametrize("name", [
    "recording.wav",
    "section_00_source_test_broken_0001.wav",
    "section_00_sideways_test_normal_0001.wav",
    "section_xx_0001.wav",
])
def test_unrecognised_names_raise(name: str) -> None:
    p = Path("/d/fan/test") / name
    with pytest.raises(InputError, match="file name not recognised") as ei:
        parse_filename(p)
    assert str(ei.value).startswith(f"{p}: ") and "\n" not in str(ei.value)


def test_record_is_frozen_hashable_and_validated() -> None:
    rec = parse_filename(Path("/d/fan/train/section_00_source_train_normal_0040_m-n_X.wav"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.label = "anomaly"  # type: ignore[misc]
    assert len({rec, dataclasses.replace(rec)}) == 1
    with pytest.raises(ValueError, match="domain"):
        ClipRecord(Path("a.wav"), "fan", "00", "elsewhere", "train", "normal")


def test_strip_machine_prefix() -> None:
    assert strip_machine_prefix("bearing_test_section_00_source_test_normal_0022_vel_9_loc_A.wav") \
        == "section_00_source_test_normal_0022_vel_9_loc_A.wav"
    assert strip_machine_prefix("section_00_0001.wav") == "section_00_0001.wav"


def test_read_attributes_csv_dcase2022_format(tmp_path: Path) -> None:
    p = tmp_path / "attributes_00.csv"
    p.write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "bearing/train/section_00_source_train_normal_0000_vel_6_loc_A.wav,vel,6,loc,A\n"
        "bearing/test/section_00_0003.wav,vel,10,,\n"
    )
    table = read_attributes_csv(p)
    assert table == {
        "section_00_source_train_normal_0000_vel_6_loc_A.wav": {"vel": "6", "loc": "A"},
        "section_00_0003.wav": {"vel": "10"},
    }
    bad = tmp_path / "attributes_01.csv"
    bad.write_text("name,a\nx.wav,1\n")
    with pytest.raises(InputError, match="no 'file_name' column"):
        read_attributes_csv(bad)


def test_read_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "ground_truth_data").mkdir()
    (tmp_path / "ground_truth_domain").mkdir()
    (tmp_path / "ground_truth_data" / "ground_truth_ToyCar_section_03_test.csv").write_text(
        "section_03_0000.wav,1\nsection_03_0001.wav,0\n")
    (tmp_path / "ground_truth_domain" / "ground_truth_ToyCar_section_03_test.csv").write_text(
        "section_03_0000.wav,0\nsection_03_0001.wav,1\n")
    for where in (tmp_path, tmp_path / "ground_truth_data"):
        gt = read_ground_truth(where)
        assert gt.labels == {("ToyCar", "03", "section_03_0000.wav"): "anomaly",
                             ("ToyCar", "03", "section_03_0001.wav"): "normal"}
        assert gt.domains == {("ToyCar", "03", "section_03_0000.wav"): "source",
                              ("ToyCar", "03", "section_03_0001.wav"): "target"}
    (tmp_path / "ground_truth_data" / "ground_truth_fan_section_00_test.csv").write_text(
        "section_00_0000.wav,1\nsection_00_0001.wav,yes\n")
    with pytest.raises(InputError, match=r"ground_truth_fan_section_00_test\.csv: line 2"):
        read_ground_truth(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no ground truth found"):
        read_ground_truth(tmp_path / "empty")
    with pytest.raises(InputError, match="ground-truth folder not found"):
        read_ground_truth(tmp_path / "nowhere")
