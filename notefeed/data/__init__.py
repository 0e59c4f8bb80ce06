"""notefeed.data"""
