"""notefeed.sim"""
