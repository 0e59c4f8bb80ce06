"""notefeed.recall"""
