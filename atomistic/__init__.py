"""atomistic"""
