"""Using a trained model: prediction (files, arrays, long recordings), evaluation, the inference passes, the ONNX export and backend, the MLflow model."""
