"""tomoclass.cam"""
