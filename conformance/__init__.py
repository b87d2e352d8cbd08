"""kaffa_conformance"""
