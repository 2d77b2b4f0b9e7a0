"""multiscale"""
