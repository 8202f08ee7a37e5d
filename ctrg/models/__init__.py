"""ctrg.models"""
