"""core/triggers"""
