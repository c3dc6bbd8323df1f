"""core/datasets"""
