"""Analysis code: what the tools use to measure, calibrate, plan and tabulate.

* :mod:`.head_selection`: scores attention heads over a calibration set and writes the
  selection as a config snippet (``tools/analysis_tools/select_heads.py``);
* :mod:`.memory_estimate`: per-GPU memory and throughput planning
  (``tools/analysis_tools/estimate_memory.py``);
* :mod:`.benchmark_table`: the rows, Markdown and JSON of ``tools/benchmark.py``.

It sits above the runtime: it may import any of crseg, but the runtime (``crseg.models``,
``crseg.engine``, ``crseg.datasets``, ``crseg.apis``, ``crseg.evaluation``, ``crseg.utils``,
``crseg.glcot``, ``crseg.annotation``, ...) never imports it (``tests/test_import_layers.py``).
Nothing is imported here: import the module you need.
"""
