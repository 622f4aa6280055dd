"""The MLflow model from code (``mlflow.pyfunc.log_model(python_model=<this file>)``).

MLflow runs this file when it logs and when it loads the model, instead of unpickling an object.
It names the factory in ``pyfunc.py``; ``tracking.py`` wraps it in MLflow's interface.
"""

from deepemocluster.serving.pyfunc import load
from deepemocluster.tracking import set_pyfunc_model

set_pyfunc_model(load)
