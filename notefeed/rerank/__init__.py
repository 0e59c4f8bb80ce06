"""notefeed.rerank"""
