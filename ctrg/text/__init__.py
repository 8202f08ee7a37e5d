"""ctrg.text"""
