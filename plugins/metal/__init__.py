"""kaffa_metal placeholder"""
