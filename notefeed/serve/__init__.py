"""notefeed.serve"""
