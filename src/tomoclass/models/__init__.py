"""tomoclass.models"""
