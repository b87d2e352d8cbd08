"""kaffa_cuda placeholder"""
