"""notefeed.eval"""
