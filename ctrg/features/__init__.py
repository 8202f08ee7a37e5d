"""ctrg.features"""
