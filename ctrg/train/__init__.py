"""ctrg.train"""
