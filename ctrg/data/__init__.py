"""ctrg.data"""
