"""tomoclass.io"""
