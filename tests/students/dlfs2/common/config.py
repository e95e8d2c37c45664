# A stand-in for a reader's common/config.py of "Deep Learning from Scratch 2" (Koki Saito, O'Reilly Japan): written
# for twinnet's tests in that book's API, not copied from it.
GPU = False
