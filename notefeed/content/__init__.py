"""notefeed.content"""
