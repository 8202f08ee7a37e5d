"""ctrg.evaluate"""
