# A stand-in for a reader's common/np.py of "Deep Learning from Scratch 2": the array module, NumPy here (CuPy where
# config.GPU is set). Written for twinnet's tests in that book's API, not copied from it.
from common.config import GPU

if GPU:
    import cupy as np  # noqa: F401
else:
    import numpy as np  # noqa: F401
