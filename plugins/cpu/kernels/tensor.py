"""TODO"""

from kaffa.kernels import KernelTable

table = KernelTable("cpu")
