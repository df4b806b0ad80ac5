from setuptools import setup  # metadata lives in setup.cfg

setup()
