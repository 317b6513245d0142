"""tomoclass.simulate"""
