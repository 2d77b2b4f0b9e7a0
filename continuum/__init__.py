"""continuum"""
