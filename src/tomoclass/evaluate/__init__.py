"""tomoclass.evaluate"""
