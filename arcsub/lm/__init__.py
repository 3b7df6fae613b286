"""The in-context LM family: a causal LM reads an ARC task as text (from scratch or any local Hugging Face
checkpoint), is trained and fine-tuned per task at test time (TTFT), and samples answers through an engine."""
