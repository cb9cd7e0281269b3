baseline.py --arch resnet20 --epochs 30 --batch-size 128 --seed 0
