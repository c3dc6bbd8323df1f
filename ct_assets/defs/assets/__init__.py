"""defs/assets"""
