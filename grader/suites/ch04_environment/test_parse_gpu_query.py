"""Exercise 1: nvidia-smi's CSV, read by the header's names, on GPUs that report everything,
on MIG cards, on old drivers that report less, and on machines where nvidia-smi failed."""
import pytest

KEYS = {"index", "name", "driver_version", "memory_total_mib", "memory_used_mib",
        "compute_capability", "mig_enabled"}
FULL_HEADER = ("index, name, driver_version, memory.total [MiB], memory.used [MiB], compute_cap, "
               "mig.mode.current")


def gpu(index=None, name=None, driver=None, total=None, used=None, cc=None, mig=None):
    return {"index": index, "name": name, "driver_version": driver, "memory_total_mib": total,
            "memory_used_mib": used, "compute_capability": cc, "mig_enabled": mig}


def _parse(student, text):
    got = student.parse_gpu_query(text)
    assert isinstance(got, list), f"return a list of dicts, one per GPU; got {type(got).__name__}"
    for item in got:
        assert isinstance(item, dict) and set(item) == KEYS, (
            f"each GPU is a dict with exactly the keys {sorted(KEYS)}; got {item!r:.200}")
    return got


@pytest.mark.points(1)
def test_h100_node_all_columns(student):
    """a 4-GPU H100 node, every column, units on the values"""
    text = FULL_HEADER + "\n" + "".join(
        f"{i}, NVIDIA H100 80GB HBM3, 580.95.05, 81559 MiB, {i * 1000 + 3} MiB, 9.0, Disabled\n" for i in range(4))
    got = _parse(student, text)
    want = [gpu(i, "NVIDIA H100 80GB HBM3", "580.95.05", 81559, i * 1000 + 3, (9, 0), False) for i in range(4)]
    assert got == want, f"got {got[:2]!r:.400} ..., expected {want[:2]!r:.400} ..."


@pytest.mark.points(1)
def test_columns_found_by_name(student):
    """a query in another order, without units (csv,nounits), some columns absent"""
    text = ("compute_cap, memory.used [MiB], name, driver_version\n"
            "8.9, 512, NVIDIA L4, 535.230.02\n"
            "10.0, 0, NVIDIA B200, 570.172.08\n")
    got = _parse(student, text)
    want = [gpu(None, "NVIDIA L4", "535.230.02", None, 512, (8, 9), None),
            gpu(None, "NVIDIA B200", "570.172.08", None, 0, (10, 0), None)]
    assert got == want, (f"got {got!r:.400}, expected {want!r:.400}: find each column by the header's "
                         "name (before any [unit]); a column the query did not ask for is None")


@pytest.mark.points(1)
def test_not_available_values_are_none(student):
    """an A100 in MIG mode and an old card: [N/A] and [Not Supported] become None"""
    text = (FULL_HEADER + "\n"
            "0, NVIDIA A100-SXM4-80GB, 535.161.08, 81920 MiB, [N/A], 8.0, Enabled\n"
            "1, Tesla K80, 470.256.02, 11441 MiB, 0 MiB, [Not Supported], [N/A]\n"
            "\n")
    got = _parse(student, text)
    want = [gpu(0, "NVIDIA A100-SXM4-80GB", "535.161.08", 81920, None, (8, 0), True),
            gpu(1, "Tesla K80", "470.256.02", 11441, 0, None, None)]
    assert got == want, (f"got {got!r:.400}, expected {want!r:.400}: a value of [N/A] or [Not Supported] "
                         "is None; mig.mode.current Enabled is True; blank lines are skipped")


@pytest.mark.points(0.5)
def test_header_only_is_no_gpu(student):
    """a header and no GPU lines is an empty list"""
    got = _parse(student, FULL_HEADER + "\n")
    assert got == [], f"no GPU lines means no GPUs: expected [], got {got!r:.200}"


@pytest.mark.parametrize("text", [
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
    "latest NVIDIA driver is installed and running.\n",
    "No devices were found\n",
    "",
    FULL_HEADER + "\n0, NVIDIA H100 80GB HBM3, 580.95.05, 81559 MiB\n",
], ids=["driver-failure", "no-devices", "empty", "short-row"])
@pytest.mark.points(0.5)
def test_rejects_what_is_not_a_gpu_list(student, text):
    """an error message, nothing, or a row shorter than the header raises ValueError"""
    with pytest.raises(ValueError):
        student.parse_gpu_query(text)
        raise AssertionError(f"parse_gpu_query({text[:60]!r}...) returned instead of raising ValueError")
