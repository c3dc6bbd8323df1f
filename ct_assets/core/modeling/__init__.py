"""core/modeling"""
