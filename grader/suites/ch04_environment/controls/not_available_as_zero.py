"""Negative control: [N/A] and [Not Supported] read as 0 / False instead of "unknown" (None)."""
# targets: parse_gpu_query


def parse_gpu_query(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty")
    header = [f.split("[")[0].strip() for f in lines[0].split(",")]
    if "name" not in header:
        raise ValueError("not nvidia-smi output")
    keys = {"index": "index", "name": "name", "driver_version": "driver_version",
            "memory.total": "memory_total_mib", "memory.used": "memory_used_mib",
            "compute_cap": "compute_capability", "mig.mode.current": "mig_enabled"}
    gpus = []
    for line in lines[1:]:
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(header):
            raise ValueError("short row")
        gpu = dict.fromkeys(keys.values())
        for field, value in zip(header, values):
            na = value.startswith("[")
            if field in ("index", "memory.total", "memory.used"):
                gpu[keys[field]] = 0 if na else int(value.split()[0])
            elif field == "compute_cap":
                gpu[keys[field]] = (0, 0) if na else tuple(int(x) for x in value.split("."))
            elif field == "mig.mode.current":
                gpu[keys[field]] = value == "Enabled"
            elif field in keys:
                gpu[keys[field]] = value
        gpus.append(gpu)
    return gpus
