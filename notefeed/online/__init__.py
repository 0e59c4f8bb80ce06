"""notefeed.online"""
