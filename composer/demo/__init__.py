"""The demo ocean: a small real base LM and LoRA experts Composer trains offline (DESIGN §5).

`skills` defines the synthetic skills and the benchmark's prompts, `train` the tokenizer,
the base model and the training loops, `build` trains everything and registers it
(`composer build-demo`).
"""
