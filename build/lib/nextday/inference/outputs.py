"""What every served answer holds, defined where the serving code (which travels with each
registered model) can import it without the training stack."""

OUTPUTS = ("prediction", "sigma", "p10", "p50", "p90")
# ModelInference's extra column: a row with a value far outside the training range
OUT_OF_RANGE = "out_of_range"
