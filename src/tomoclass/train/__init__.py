"""tomoclass.train"""
