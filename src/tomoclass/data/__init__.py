"""tomoclass.data"""
