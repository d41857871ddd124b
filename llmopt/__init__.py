"""llmopt: the course library students import.

Course-model loading, the parts of an inference engine that are not exercises, device
calibration and the benchmark harness, workload traces, and the course's plots.
"""
