"""notefeed.rank"""
