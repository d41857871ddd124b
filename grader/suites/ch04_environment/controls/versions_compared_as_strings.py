"""Negative control: driver versions compared as strings ("570.124.06" < "570.26")."""
# targets: compatibility

CUDA_MIN_DRIVER = {"11.8": "520.61.05", "12.0": "525.60.13", "12.1": "530.30.02", "12.2": "535.54.03",
                   "12.3": "545.23.06", "12.4": "550.54.14", "12.5": "555.42.02", "12.6": "560.28.03",
                   "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06"}
MINOR = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}


def cuda_supported_by_driver(driver_version):
    ok = [c for c, d in CUDA_MIN_DRIVER.items() if d <= driver_version]
    return max(ok, default=None)


def check_torch_cuda(driver_version, torch_cuda):
    if driver_version is None:
        return "blocked", "no driver"
    if torch_cuda is None:
        return "fail", f"CPU-only torch on driver {driver_version}"
    newest = cuda_supported_by_driver(driver_version)
    if newest is not None and newest >= torch_cuda:
        return "pass", f"driver {driver_version} runs CUDA {torch_cuda}"
    if driver_version >= MINOR.get(torch_cuda.split(".")[0], "~"):
        return "warn", f"driver {driver_version} runs CUDA {torch_cuda} by minor-version compatibility"
    return "fail", f"driver {driver_version} cannot run CUDA {torch_cuda}"
