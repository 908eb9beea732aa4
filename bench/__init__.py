"""`personid bench`: model, service and gallery benchmarks (figures and plots, not tests).

Each section is measured within one run of the command, so the ratios it reports (ONNX Runtime vs PyTorch,
batching on vs off, the service vs the bare model call) compare figures taken on the same machine under the
same load. The targets are printed beside the figures as met / missed and are never adjusted to the machine.

1. `model`: PyTorch eager vs ONNX Runtime fp32 vs int8 on the same preprocessed images, same thread count.
2. `service`: a real `personid serve` (`server`: uvicorn subprocess, embedded Qdrant in a temporary folder)
   under a bounded load of concurrent HTTP requests (`load`), with the micro-batcher on and off.
3. `gallery`: search latency and enroll rate against gallery size, embedded Qdrant (and a server when
   `PERSONID_QDRANT_URL` is set).

Also: `cli` (options, section order), `measure` (profiles, timing), `inputs` (JPEG crops preprocessed as the
service does), `targets`, `tables` / `plots` / `report` (docs/benchmarks.md, PNGs, JSON), and `search_modes`
(`groups` vs `centroid` accuracy on synthetic clusters). Torch and the training code are imported only inside
the model section's functions, so `personid bench --help` and the other sections never load them.
"""
