"""What stands beside the library: the demo and ablation runners, the model, data and GPU
benchmarks and the paper's compute tables. They may write Markdown documents; the library never does."""
