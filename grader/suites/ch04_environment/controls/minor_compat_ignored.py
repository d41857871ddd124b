"""Negative control: minor-version compatibility ignored: a driver below the runtime's own row always fails."""
# targets: compatibility

CUDA_MIN_DRIVER = {"11.8": "520.61.05", "12.0": "525.60.13", "12.1": "530.30.02", "12.2": "535.54.03",
                   "12.3": "545.23.06", "12.4": "550.54.14", "12.5": "555.42.02", "12.6": "560.28.03",
                   "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06"}


def _t(v):
    return tuple(int(x) for x in v.split("."))


def cuda_supported_by_driver(driver_version):
    ok = [c for c, d in CUDA_MIN_DRIVER.items() if _t(d) <= _t(driver_version)]
    return max(ok, key=_t, default=None)


def check_torch_cuda(driver_version, torch_cuda):
    if driver_version is None:
        return "blocked", "no driver"
    if torch_cuda is None:
        return "fail", f"CPU-only torch on driver {driver_version}"
    newest = cuda_supported_by_driver(driver_version)
    if newest is not None and _t(newest) >= _t(torch_cuda):
        return "pass", f"driver {driver_version} runs CUDA {torch_cuda}"
    return "fail", f"driver {driver_version} cannot run CUDA {torch_cuda}"
