"""tomoclass.locate"""
