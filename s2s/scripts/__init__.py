"""Console scripts that decode with a trained checkpoint."""

BF16_HELP = (
    "decode with bfloat16 weights: faster where the hardware has bfloat16 matrix products "
    "(AVX512-BF16 or AMX CPUs, recent GPUs), slower elsewhere; outputs may differ slightly from "
    "float32's"
)
