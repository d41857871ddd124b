"""Negative control: nvidia-smi's columns read by their position in the default query, not by the header's names."""
# targets: parse_gpu_query


def parse_gpu_query(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or "name" not in lines[0]:
        raise ValueError("not nvidia-smi output")
    gpus = []
    for line in lines[1:]:
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(lines[0].split(",")):
            raise ValueError("short row")
        values += [None] * 7
        none = lambda v: None if v in (None, "[N/A]", "[Not Supported]") else v  # noqa: E731
        gpus.append({"index": int(values[0]) if none(values[0]) else None, "name": values[1],
                     "driver_version": values[2],
                     "memory_total_mib": int(values[3].split()[0]) if none(values[3]) else None,
                     "memory_used_mib": int(values[4].split()[0]) if none(values[4]) else None,
                     "compute_capability": tuple(int(x) for x in values[5].split(".")) if none(values[5]) else None,
                     "mig_enabled": values[6] == "Enabled" if none(values[6]) else None})
    return gpus
