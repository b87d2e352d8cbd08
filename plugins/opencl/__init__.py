"""kaffa_opencl placeholder"""
